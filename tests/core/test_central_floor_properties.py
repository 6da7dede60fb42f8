"""The central policy is a floor, on the path every request takes (the
tracker, the run's record on two replicas, the judge, the check where the
action runs): a property over central policies, requests (asking less or
more than the policy requires), people deciding through every channel,
break-glass, and a new version of the policy loaded between the approval
and its use.

Whatever the order: a request needs at least what the central policy
requires of it (people, and only from its groups); a request it denies is
rejected by the policy and never approved (not by a person, not by
breaking glass), and its action never permitted; an approval permits its
action only when the version in force at the check is met by the
approvals given (an approval under v1 does not permit under a stricter
v2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.control import runs
from spanvisor.control.judge import PipelineControl
from spanvisor.control.log import ControlLog
from spanvisor.events import Decision, Event, HumanIntervention
from spanvisor.gate.central import Holder
from spanvisor.gate.requirement import Requirement
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from .test_groups_properties import GROUPS, decision, truth

TRACE = "cd" * 16
TASK = "T-central"
ROOT = "0000000000000001"
COMMANDS = ("deploy prod", "deploy staging", "git push origin main", "git push --force", "ls -la")
GLOBS = (None, "deploy *", "git push*", "*prod*", "*--force*")
FROMS = {"anyone": (), "sre": ("group:sre",), "sre_or_carol": ("group:sre", "carol"), "dev": ("group:dev",)}

central_rule = st.tuples(
    st.sampled_from(["allow", "ask", "deny"]), st.sampled_from(GLOBS), st.integers(1, 3), st.sampled_from(list(FROMS))
)
ask = st.tuples(
    st.just("request"),
    st.sampled_from(["a1", "a2"]),
    st.sampled_from(COMMANDS),
    st.integers(1, 3),
    st.sampled_from(list(FROMS)),
)
vote = st.tuples(
    st.just("vote"),
    st.sampled_from(["a1", "a2"]),
    st.sampled_from([*GROUPS, "anon"]),
    st.sampled_from(["token", "oidc", "slack_known", "slack", "shared", "glass"]),
    st.sampled_from("ab"),
    st.sampled_from(["approve", "approve", "approve", "reject"]),
)


def policy_text(rules: list[tuple[Any, ...]]) -> str:
    out = ['name = "floor"']
    for i, (verdict, glob, n, only) in enumerate(rules):
        out.append(f'[[rule]]\nname = "r{i}"\ndecision = "{verdict}"')
        if glob is not None:
            out.append(f'command = "{glob}"')
        if verdict == "ask":
            out.append(f"approvers = {n}")
            if FROMS[only]:
                out.append(f"from = {json.dumps(list(FROMS[only]))}")
    return "\n".join(out) + "\n"


def floor_of(rules: list[tuple[Any, ...]], command: str) -> Requirement:
    """What the policy requires of a simple command, worked out by hand
    (a deny rule sees the whole command wherever it stands)."""
    if any(v == "deny" and (g is None or fnmatch.fnmatchcase(command, g)) for v, g, _, _ in rules):
        return Requirement("deny")
    for verdict, glob, n, only in rules:
        if glob is None or fnmatch.fnmatchcase(command, glob):
            return Requirement(verdict, n if verdict == "ask" else 1, FROMS[only] if verdict == "ask" else ())
    return Requirement("allow")


def action(command: str) -> dict[str, Any]:
    return {"tool": "Bash", "arguments": {"command": command}}


class World:
    """Replica A tracks the task; replica B shares its store. Both hold the
    central policy of one file."""

    def __init__(self, path: str) -> None:
        self.holder = Holder(path, poll_s=0.0)
        self.store = InMemoryStateStore()
        self.events: list[Event] = []
        self.tracker = TaskTracker(TrackerSettings(floor=self.holder))
        self.a = self._control(self.tracker, self.events)
        self.b = self._control(TaskTracker(TrackerSettings(floor=self.holder)), [])
        self.t = time.time_ns()

    def _control(self, tracker: TaskTracker, sink: list[Event]) -> PipelineControl:
        holder: list[PipelineControl] = []

        def dispatch(evs: list[Event]) -> None:
            holder[0].observe(evs)
            sink.extend(evs)

        c = PipelineControl(tracker, dispatch, asyncio.get_running_loop)
        holder.append(c)
        c.attach(ControlLog(self.store))
        return c

    def request(
        self, n: int, aid: str, command: str, approvers: int, only: str, requester: str | None = "dave"
    ) -> None:
        self.t += 1_000_000
        attrs: dict[str, Any] = {
            cv.APPROVAL_ID: aid,
            cv.APPROVAL_QUESTION: f"Run {command}?",
            cv.APPROVAL_ACTION: json.dumps(action(command), sort_keys=True, separators=(",", ":")),
            cv.APPROVAL_APPROVERS: approvers,
        }
        if requester:
            attrs[cv.APPROVAL_REQUESTER] = requester
        if FROMS[only]:
            attrs[cv.APPROVAL_FROM] = list(FROMS[only])
        stamps = {cv.TASK_ROOT: ROOT, cv.TASK_ID: TASK}
        span = SpanData(
            TRACE,
            f"{0xF000 + n:016x}",
            ROOT,
            "step",
            self.t,
            self.t + 1,
            stamps,
            events=(SpanEventData(cv.EVENT_APPROVAL_REQUEST, self.t, attrs),),
        )
        evs = self.tracker.span_ended(span)
        self.a.observe(evs)
        self.events.extend(evs)


def person_decision(i: int, aid: str, who: str, channel: str, verb: str) -> Decision:
    if channel != "glass":
        return dataclasses.replace(decision(i, aid, who, channel, verb), task_id=TASK)
    d = dataclasses.replace(decision(i, aid, who if who != "anon" else "alice", "oidc", verb), task_id=TASK)
    return dataclasses.replace(d, break_glass=True, comment="prod is down") if verb == "approve" else d


async def _run(path: str, rules: list[tuple[Any, ...]], ops: list[tuple[Any, ...]]) -> World:
    w = World(path)
    asked: dict[str, str] = {}
    who_is: dict[str, str] = {}
    for i, o in enumerate(ops, start=1):
        if o[0] == "request":
            _, aid, command, n, only = o
            w.request(i, aid, command, n, only)
            asked.setdefault(aid, command)
        else:
            _, aid, who, channel, where, verb = o
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)
            d = person_decision(i, aid, who, channel, verb)
            who_is[d.intervention_id] = truth(d.person or who, channel if channel != "glass" else "oidc")
            await (w.a if where == "a" else w.b).decide(d)
    assert w.a.log is not None
    await w.a.sync.flush(w.a.log)
    try:
        await _check(w, rules, asked, who_is)
    finally:
        for c in (w.a, w.b):
            await c.close()
    return w


def _in(who: str, only: tuple[str, ...]) -> bool:
    if not only:
        return True
    if who.startswith("slack:"):
        return any(w.startswith("group:") and w[6:] in GROUPS.get(who[8:], ()) for w in only)
    return any((w[6:] in GROUPS.get(who, ())) if w.startswith("group:") else w == who for w in only)


async def _check(w: World, rules: list[tuple[Any, ...]], asked: dict[str, str], who_is: dict[str, str]) -> None:
    rec = dict(await w.a.run(TASK) or {})
    decided = {d.approval_id: d for d in runs.decisions_of(rec) if d.action in ("approve", "reject")}
    for aid, raw in runs.requests_of(rec).items():
        req = runs.request_from_dict(raw)
        assert req is not None
        command = asked[aid]
        need = floor_of(rules, command)
        assert req.policy_version == w.holder.version
        d = decided.get(aid)
        if need.verdict == "deny":
            assert req.policy_denied and raw["state"] == "decided", raw
            assert d is not None and d.action == "reject" and d.source == "policy", d
            assert not runs.votes_of(raw), "a vote on a request the policy denies"
            applied = [
                e.decision.source
                for e in w.events
                if isinstance(e, HumanIntervention) and e.decision.approval_id == aid and e.outcome == "applied"
            ]
            assert applied == ["policy"], applied
            got = await w.a.permit(TASK, aid, action(command))
            assert not got.permitted
            continue
        assert not req.policy_denied
        if need.verdict == "ask":
            assert req.approvers >= need.approvers, (req.approvers, need)
            if need.approvers_from:
                assert {x.casefold() for x in req.approvers_from} <= {x.casefold() for x in need.approvers_from}
        if d is None or d.action != "approve":
            continue
        people = {who_is[v.intervention_id] for v in [*runs.votes_of(raw), d]}
        if need.verdict == "ask" and not d.break_glass:
            assert len(people) >= need.approvers, ("fewer people than the floor", people, need)
            assert all(_in(p, need.approvers_from) for p in people), ("someone outside the floor's from", people)
        got = await w.a.permit(TASK, aid, action(command))
        assert got.permitted, got


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(central_rule, max_size=3),
    asked=st.tuples(ask, ask).map(lambda r: (("request", "a1", *r[0][2:]), ("request", "a2", *r[1][2:]))),
    ops=st.lists(vote, max_size=12),
)
def test_no_request_gets_less_approval_than_the_central_floor(
    rules: list[tuple[Any, ...]], asked: tuple[Any, ...], ops: list[tuple[Any, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "floor.toml")
        Path(path).write_text(policy_text(rules))
        asyncio.run(_run(path, rules, [*asked, *ops]))


V1 = '[[rule]]\nname = "one"\ncommand = "deploy *"\ndecision = "ask"\n'


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    v2=central_rule,
    approver=st.sampled_from(["alice", "bob", "carol"]),  # dave asked
    channel=st.sampled_from(["token", "oidc", "slack_known", "shared", "glass"]),
)
def test_an_approval_under_v1_does_not_permit_under_a_stricter_v2(
    v2: tuple[Any, ...], approver: str, channel: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floor.toml"
        path.write_text(V1)

        async def go() -> tuple[Any, Any, World]:
            w = World(str(path))
            w.request(1, "a1", "deploy prod", 1, "anyone", requester=None)
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)
            verdict = await w.a.decide(person_decision(2, "a1", approver, channel, "approve"))
            path.write_text(policy_text([v2]))
            os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000))
            got = await w.a.permit(TASK, "a1", action("deploy prod"))
            for c in (w.a, w.b):
                await c.close()
            return verdict, got, w

        verdict, got, w = asyncio.run(go())
        assert verdict.outcome == "applied", verdict
        need = floor_of([v2], "deploy prod")
        d = person_decision(2, "a1", approver, channel, "approve")
        proven = d.verified
        met = need.verdict == "allow" or (
            need.verdict == "ask"
            and (
                channel == "glass"
                or (need.approvers <= 1 and not need.approvers_from)
                or (proven and need.approvers <= 1 and _in(truth(approver, channel), need.approvers_from))
            )
        )
        assert got.permitted is met, (v2, approver, channel, got, w.holder.version)
        if not met:
            assert got.code in ("policy_denied", "policy_changed"), got
            assert w.holder.version.split("@")[1] in got.reason or need.verdict == "deny"


def test_examples_of_the_floor() -> None:
    rules = [("deny", "*--force*", 1, "anyone"), ("ask", "deploy *", 2, "sre")]
    ops: list[tuple[Any, ...]] = [
        ("request", "a1", "deploy prod", 1, "anyone"),  # raised to 2 from sre
        ("request", "a2", "git push --force", 3, "anyone"),  # denied whatever it asked
        ("vote", "a2", "alice", "glass", "a", "approve"),  # not even by breaking glass
        ("vote", "a1", "carol", "oidc", "a", "approve"),  # dev: not in the floor's from
        ("vote", "a1", "alice", "oidc", "a", "approve"),  # a vote: one of two
        ("vote", "a1", "bob", "token", "b", "approve"),  # decides
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "floor.toml")
        Path(path).write_text(policy_text(rules))
        w = asyncio.run(_run(path, rules, ops))
        codes = [getattr(e, "code", None) or e.outcome for e in w.events if isinstance(e, HumanIntervention)]
        assert codes == ["applied", "policy_denied", "not_in_group", "applied"], codes  # the last on replica B
