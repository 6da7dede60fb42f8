"""Whose approvals count: a property over requests that name ``from``
(groups and people) and N approvers, and people deciding through every
channel on two replicas: their own token (the deciders file), their
identity provider's token, Slack as a person the deciders file names, Slack
as a bare user (groups from Slack's user groups), the shared token.

Whatever the order, what a request counted (its votes and the approve that
decided it) never includes a person outside ``from``, never one person
twice (whatever channels they used), never the requester, and never more
than the request needs; a decided request counted exactly that many.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.control import runs
from spanvisor.events import Decision
from spanvisor.spans import conventions as cv

from .test_decisions_properties import TASK, World

APPROVALS = ("a1", "a2")
# Who each person is, in truth: their groups (the file, the provider and Slack all agree).
GROUPS = {"alice": ("sre",), "bob": ("sre", "dev"), "carol": ("dev",), "dave": ("sre",)}
CHANNELS = ("token", "oidc", "slack_known", "slack", "shared")
FROMS = {"anyone": (), "sre": ("group:sre",), "sre_or_carol": ("group:sre", "carol"), "dev": ("group:dev",)}

request = st.tuples(
    st.just("request"),
    st.sampled_from(APPROVALS),
    st.sampled_from([1, 2, 3]),
    st.sampled_from(list(FROMS)),
    st.sampled_from([None, "dave", "alice"]),
)
vote = st.tuples(
    st.just("vote"),
    st.sampled_from(APPROVALS),
    st.sampled_from([*GROUPS, "anon"]),
    st.sampled_from(CHANNELS),
    st.sampled_from("ab"),
    st.sampled_from(["approve", "approve", "approve", "reject"]),
)


def truth(who: str, channel: str) -> str:
    """The person as the test knows them: a Slack user no file names is only
    a Slack id to anyone (another namespace than a name)."""
    return f"slack:U-{who}" if channel == "slack" or who == "anon" else who


def decision(i: int, aid: str, who: str, channel: str, verb: str) -> Decision:
    """As each channel delivers it (what the control API and the Slack
    intake make of the caller)."""
    if who == "anon" or channel == "shared":
        return Decision(f"d{i}", TASK, verb, "anonymous", time.time_ns(), approval_id=aid, source="cli")  # type: ignore[arg-type]
    slack = channel.startswith("slack")
    person = None if channel == "slack" else who
    actor = f"U-{who}" if slack else (f"{who}@example.com" if channel == "oidc" else who)
    return Decision(
        f"d{i}",
        TASK,
        verb,  # type: ignore[arg-type]
        actor,
        time.time_ns(),
        approval_id=aid,
        actor_name=None if slack else who,
        source="slack" if slack else "cli",
        verified=True,
        person=person,
        groups=GROUPS[who],
        proof="slack" if slack else channel,
    )


def allowed(who: str, only: tuple[str, ...]) -> bool:
    if not only or who.startswith("slack:"):
        return not only or any(w.startswith("group:") and w[6:] in GROUPS.get(who[8:], ()) for w in only)
    return any((w[6:] in GROUPS[who]) if w.startswith("group:") else w == who for w in only)


async def _run(ops: list[tuple[Any, ...]]) -> tuple[World, dict[str, tuple[int, str, str | None]], dict[str, str]]:
    w = World()
    w.span(0, cv.EVENT_CHECKPOINT, {cv.PROGRESS: 1})
    asked: dict[str, tuple[int, str, str | None]] = {}
    who_is: dict[str, str] = {}
    for i, o in enumerate(ops, start=1):
        if o[0] == "request":
            _, aid, n, only, requester = o
            attrs: dict[str, Any] = {cv.APPROVAL_ID: aid, cv.APPROVAL_QUESTION: "Deploy?", cv.APPROVAL_APPROVERS: n}
            if FROMS[only]:
                attrs[cv.APPROVAL_FROM] = list(FROMS[only])
            if requester:
                attrs[cv.APPROVAL_REQUESTER] = requester
            w.span(i, cv.EVENT_APPROVAL_REQUEST, attrs)
            asked.setdefault(aid, (n, only, requester))
        else:
            _, aid, who, channel, where, verb = o
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)
            d = decision(i, aid, who, channel, verb)
            who_is[d.intervention_id] = truth(who, channel)
            await (w.a if where == "a" else w.b).decide(d)
    for c in [*w.controls, w.b]:
        await c.close()
    return w, asked, who_is


def _assert(w: World, asked: dict[str, tuple[int, str, str | None]], who_is: dict[str, str]) -> None:
    rec = asyncio.run(_record(w))
    decided = {d.approval_id: d for d in runs.decisions_of(rec) if d.action == "approve"}
    for aid, raw in runs.requests_of(rec).items():
        n, only, requester = asked[aid]
        counted = runs.votes_of(raw) + ([decided[aid]] if aid in decided else [])
        people = [who_is[d.intervention_id] for d in counted]
        assert len(set(people)) == len(people), ("one person counted twice", people)
        assert requester not in people, ("the requester counted", people)
        assert all(allowed(p, FROMS[only]) for p in people), ("someone outside from counted", people, only)
        assert len(people) <= n, ("more counted than needed", people)
        if aid in decided:
            assert len(people) == n, ("decided on fewer than needed", people)


async def _record(w: World) -> dict[str, Any]:
    return dict(await w.a.run(TASK) or {})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    asked=st.tuples(request, request).map(lambda r: (("request", "a1", *r[0][2:]), ("request", "a2", *r[1][2:]))),
    ops=st.lists(vote, max_size=20),
)
def test_only_people_from_the_list_count_each_once_never_the_requester(
    asked: tuple[Any, ...], ops: list[tuple[Any, ...]]
) -> None:
    w, reqs, who_is = asyncio.run(_run([*asked, *ops]))
    _assert(w, reqs, who_is)


def _outcomes(ops: list[tuple[Any, ...]]) -> list[str | None]:
    w, _, _ = asyncio.run(_run(ops))
    return [getattr(e, "code", None) or getattr(e, "outcome", None) for e in w.events if hasattr(e, "decision")]


def test_examples_of_who_counts() -> None:
    ops = [
        ("request", "a1", 2, "sre", "dave"),
        ("vote", "a1", "carol", "oidc", "a", "approve"),  # dev only: not_in_group
        ("vote", "a1", "dave", "token", "a", "approve"),  # the requester: own_request
        ("vote", "a1", "alice", "oidc", "a", "approve"),  # a vote
        ("vote", "a1", "alice", "slack_known", "a", "approve"),  # alice again, on Slack: already_voted
        ("vote", "a1", "bob", "slack", "a", "approve"),  # a bare Slack user under a quorum: unverified
        ("vote", "a1", "anon", "shared", "a", "approve"),  # unverified
        ("vote", "a1", "bob", "token", "a", "approve"),  # decides
    ]
    assert _outcomes(ops) == [
        "not_in_group",
        "own_request",
        "applied",
        "already_voted",
        "unverified",
        "unverified",
        "applied",
    ]
    # One approver from sre or carol: a bare Slack user in Slack's sre group counts.
    ops = [("request", "a1", 1, "sre_or_carol", None), ("vote", "a1", "bob", "slack", "a", "approve")]
    assert _outcomes(ops) == ["applied"]


def test_groups_from_and_break_glass_survive_the_codec_and_the_run_record() -> None:
    from spanvisor.codec import event_from_dict, event_to_dict
    from spanvisor.events import ApprovalRequest, HumanIntervention, TaskView

    d = Decision(
        "d1",
        TASK,
        "approve",
        "carol@example.com",
        1,
        approval_id="a1",
        verified=True,
        person="carol",
        groups=("breakglass", "sre"),
        proof="oidc",
        break_glass=True,
        comment="prod down",
    )
    req = ApprovalRequest("a1", "Deploy?", approvers=2, approvers_from=("group:sre", "alice"))
    view = TaskView(task_id=TASK, trace_id="t", root_span_id="r", agent_id="rivet", approvals=(req,), decisions=(d,))
    ev = HumanIntervention(event_id="d1", time_ns=1, task=view, decision=d, request=req)
    assert event_from_dict(event_to_dict(ev)) == ev
    assert runs.decision_from_dict(runs.decision_to_dict(d)) == d
    assert runs.request_from_dict(runs.request_to_dict(req)) == req
