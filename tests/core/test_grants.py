"""Standing grants' pure rules: what one covers, and the cap that never drops a live grant."""

from __future__ import annotations

import time

from spanvisor.control import grants
from spanvisor.events import ApprovalRequest


def grant(i: int, now: int, *, live: bool = True) -> grants.Grant:
    return grants.Grant(f"g{i}", "alice", "migrate", now - 10, now + (3600 * 10**9 if live else -1))


def test_the_most_live_grants_are_kept_and_a_new_one_is_refused_not_made_room_for() -> None:
    now = time.time_ns()
    value: dict[str, object] | None = None
    for i in range(grants.MAX_GRANTS):
        value, ok = grants.add(value, grant(i, now), now)
        assert ok
    refused, ok = grants.add(value, grant(999, now), now)
    assert (refused, ok) == (None, False)
    assert len([g for g in grants.grants_of(value) if g.live(now)]) == grants.MAX_GRANTS


def test_ended_grants_make_room_before_live_ones() -> None:
    now = time.time_ns()
    value, _ = grants.add(None, grant(0, now, live=False), now)
    for i in range(1, grants.MAX_GRANTS):
        value, ok = grants.add(value, grant(i, now), now)
        assert ok
    value, ok = grants.add(value, grant(1000, now), now)
    assert ok and value is not None
    kept = {g.grant_id for g in grants.grants_of(value)}
    assert "g0" not in kept and "g1000" in kept and len(kept) == grants.MAX_GRANTS


def test_a_grant_covers_only_a_single_approver_action_of_its_tool_not_asked_by_its_maker() -> None:
    now = time.time_ns()
    g = grant(1, now)
    action = '{"arguments":{},"tool":"migrate"}'
    ok = ApprovalRequest("a1", "Run?", action=action)
    assert grants.covers(g, ok, "sh", "T", "r", now)
    assert not grants.covers(g, ApprovalRequest("a1", "Run?"), "sh", "T", "r", now)  # a question: a person's
    assert not grants.covers(g, ApprovalRequest("a1", "Run?", action=action, approvers=2), "sh", "T", "r", now)
    assert not grants.covers(g, ApprovalRequest("a1", "Run?", action=action, requester="Alice"), "sh", "T", "r", now)
    # Only some people count: a grant proves no group.
    only_sre = ApprovalRequest("a1", "Run?", action=action, approvers_from=("group:sre",))
    assert not grants.covers(g, only_sre, "sh", "T", "r", now)
    assert not grants.covers(g, ok, "sh", "T", "r", now + 3601 * 10**9)  # expired
