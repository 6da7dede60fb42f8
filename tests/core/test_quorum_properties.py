"""Who may approve, how many must, and what an edit changes: a property over
requests with actions (one or two approvers, with or without a requester),
decisions from verified people and a shared-token operator through Slack,
the CLI and the API on two replicas (one restarted now and then), edits of
the arguments (and of the tool), replayed clicks and checks where the
action runs.

Whatever the order, an action runs only when a set of applied approvals
from distinct people, none of them the requester (and every one verified
when more than one is needed), reached the request's count; it runs the
arguments the last approval set (the asked ones without an edit); at most
once per request; and the agent never reads a vote as the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.canonical import canonical_json
from spanvisor.control import quorum
from spanvisor.control.runs import Permit
from spanvisor.events import Decision, HumanIntervention
from spanvisor.spans import conventions as cv

from .test_decisions_properties import TASK, World

APPROVALS = ("a1", "a2")
PEOPLE = ("alice", "bob", "carol", "anon")


def action(target: str) -> dict[str, Any]:
    return {"tool": "migrate", "arguments": {"target": target}}


EDITS = {"none": None, "dev": action("dev"), "tool": {"tool": "drop_table", "arguments": {"target": "dev"}}}

request = st.tuples(
    st.just("request"),
    st.sampled_from(APPROVALS),
    st.sampled_from(["staging", "prod"]),
    st.sampled_from([1, 2]),
    st.sampled_from([None, "alice"]),
)
person = st.tuples(
    st.just("person"),
    st.sampled_from(["approve", "approve", "reject"]),
    st.sampled_from(APPROVALS),
    st.sampled_from(PEOPLE),
    st.sampled_from(["slack", "cli", "api"]),
    st.sampled_from("ab"),
    st.sampled_from(list(EDITS)),
)
check = st.tuples(
    st.just("check"), st.sampled_from(APPROVALS), st.sampled_from(["staging", "prod", "dev"]), st.sampled_from("ab")
)
# Weighted toward what makes a story: people deciding and agents checking.
op = st.one_of(
    request, person, person, person, check, check, st.tuples(st.just("replay")), st.tuples(st.just("restart"))
)


def decision(i: int, verb: str, aid: str, who: str, channel: str, edit: str) -> Decision:
    """A person's decision as the channel delivers it: Slack's user is
    proven by the signature, a CLI or API person by their own token; the
    shared token's operator is anonymous and unproven."""
    edited = EDITS[edit]
    verified = who != "anon"
    actor = f"U-{who}" if channel == "slack" else ("anonymous" if who == "anon" else who)
    return Decision(
        f"d{i}",
        TASK,
        verb,  # type: ignore[arg-type]
        actor,
        time.time_ns(),
        approval_id=aid,
        actor_name=None if channel == "slack" else actor,
        source="slack" if channel == "slack" else channel,
        verified=verified,
        edited=canonical_json(edited) if edited is not None and verb == "approve" else None,
    )


async def _run(ops: list[tuple[Any, ...]]) -> tuple[World, list[tuple[Any, ...]]]:
    w = World()
    w.span(0, cv.EVENT_CHECKPOINT, {cv.PROGRESS: 1})
    # approval id -> the request as last asked: (target, approvers, requester)
    asked: dict[str, tuple[str, int, str | None]] = {}
    # approval id -> the approvals applied on the request as asked now
    applied: dict[str, list[Decision]] = {}
    checks: list[tuple[Any, ...]] = []
    last: Decision | None = None
    for i, o in enumerate(ops, start=1):
        if o[0] == "request":
            _, aid, target, approvers, requester = o
            attrs: dict[str, Any] = {
                cv.APPROVAL_ID: aid,
                cv.APPROVAL_QUESTION: "Run the migration?",
                cv.APPROVAL_ACTION: json.dumps(action(target)),
                cv.APPROVAL_APPROVERS: approvers,
            }
            if requester:
                attrs[cv.APPROVAL_REQUESTER] = requester
            w.span(i, cv.EVENT_APPROVAL_REQUEST, attrs)
            # The first request of an id stands: asked again with another
            # action, it is not what a person approved, and never permitted.
            asked.setdefault(aid, (target, approvers, requester))
        elif o[0] == "person":
            _, verb, aid, who, channel, where, edit = o
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)
            d = decision(i, verb, aid, who, channel, edit)
            v = await (w.a if where == "a" else w.b).decide(d)
            if v.outcome == "applied" and verb == "approve":
                applied.setdefault(aid, []).append(d)
            last = d
        elif o[0] == "replay" and last is not None:
            v = await w.b.decide(last)
            assert v.outcome != "applied", ("a replayed click counted twice", last)
        elif o[0] == "check":
            _, aid, target, where = o
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)  # the agent asked before it checks
            got: Permit = await (w.a if where == "a" else w.b).permit(TASK, aid, action(target))
            checks.append((aid, target, got, asked.get(aid), list(applied.get(aid, ()))))
        elif o[0] == "restart":
            w.restart_b()
    for c in [*w.controls, w.b]:
        await c.close()
    return w, checks


def _assert_story(w: World, checks: list[tuple[Any, ...]]) -> None:
    used: set[str] = set()
    for aid, target, got, req, approvals in checks:
        if not got.permitted:
            continue
        assert req is not None
        asked_target, needed, requester = req
        people = {quorum.person(d) for d in approvals}
        assert len(people) >= needed, ("ran on fewer people than the request needs", approvals)
        assert not any(quorum.is_requester(d, requester) for d in approvals), ("the requester approved", approvals)
        if needed > 1:
            assert all(d.verified for d in approvals), ("an unproven person counted", approvals)
        edits = {d.edited for d in approvals}
        assert len(edits) == 1, ("approvals of different arguments were combined", edits)
        (edited,) = edits
        want = json.loads(edited)["arguments"]["target"] if edited else asked_target
        assert target == want, ("ran other arguments than approved", target, want)
        assert edited is None or json.loads(edited)["tool"] == "migrate", "an edit changed the tool"
        assert aid not in used, ("an approval was used twice", aid)
        used.add(aid)
    # The agent reads only decided requests: a vote never reaches it as the answer.
    for ev in w.events:
        if isinstance(ev, HumanIntervention) and ev.votes < ev.votes_needed:
            assert ev.decision not in ev.task.decisions


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    asked=st.tuples(request, request).map(lambda r: (("request", "a1", *r[0][2:]), ("request", "a2", *r[1][2:]))),
    ops=st.lists(op, max_size=24),
)
def test_an_action_runs_only_on_enough_distinct_people_never_the_requester(
    asked: tuple[Any, ...], ops: list[tuple[Any, ...]]
) -> None:
    w, checks = asyncio.run(_run([*asked, *ops]))
    _assert_story(w, checks)


def _verdicts(ops: list[tuple[Any, ...]]) -> list[bool]:
    _, checks = asyncio.run(_run(ops))
    return [c[2].permitted for c in checks]


def test_two_people_are_needed_and_the_first_vote_alone_permits_nothing() -> None:
    ops = [
        ("request", "a1", "prod", 2, None),
        ("person", "approve", "a1", "alice", "cli", "a", "none"),
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "alice", "slack", "b", "none"),  # another namespace: counts
        ("check", "a1", "prod", "b"),
        ("check", "a1", "prod", "a"),
    ]
    assert _verdicts(ops) == [False, True, False]


def test_the_requester_an_unproven_operator_and_a_repeat_vote_do_not_count() -> None:
    ops = [
        ("request", "a1", "prod", 2, "alice"),
        ("person", "approve", "a1", "alice", "cli", "a", "none"),
        ("person", "approve", "a1", "anon", "api", "a", "none"),
        ("person", "approve", "a1", "bob", "cli", "b", "none"),
        ("person", "approve", "a1", "bob", "cli", "a", "none"),
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "carol", "slack", "b", "none"),
        ("check", "a1", "prod", "a"),
    ]
    assert _verdicts(ops) == [False, True]


def test_an_edit_runs_the_edited_arguments_and_never_another_tool() -> None:
    ops = [
        ("request", "a1", "prod", 1, None),
        ("person", "approve", "a1", "bob", "cli", "a", "tool"),  # refused: bad_edit
        ("check", "a1", "prod", "a"),
        ("person", "approve", "a1", "bob", "cli", "a", "dev"),
        ("check", "a1", "prod", "b"),
        ("check", "a1", "dev", "b"),
        ("check", "a1", "dev", "a"),
    ]
    assert _verdicts(ops) == [False, False, True, False]


def test_a_reject_by_anyone_ends_a_request_several_must_approve() -> None:
    ops = [
        ("request", "a1", "prod", 2, "alice"),
        ("person", "approve", "a1", "bob", "cli", "a", "none"),
        ("person", "reject", "a1", "alice", "api", "b", "none"),
        ("person", "approve", "a1", "carol", "slack", "a", "none"),
        ("check", "a1", "prod", "a"),
    ]
    assert _verdicts(ops) == [False]
