"""People's decisions, the agent's own spans, replicas and restarts,
interleaved at random.

Replica A tracks the task (its spans go there); replica B tracks nothing
and shares A's state store, and is restarted now and then. Requests open
(some with a timeout already past, some asked again with another question
under the same id), people decide through every channel (Slack with the
digest its button was rendered with, possibly stale; the CLI with the
digest it looked up and printed; the API with none) on existing, unknown,
finished, expired and future requests, on either replica; clicks are
replayed; the root ends, and a new run may start under the same task id.

Whatever the order: a decision is applied to at most one request, only to
the one whose question the decider was shown, at most once; every refused
decision is audited once with its reason; the agent reads at most one
answer per request, and the run's record agrees; A's stream passes the one
stream checker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.canonical import approval_digest
from spanvisor.control import runs
from spanvisor.control.judge import PipelineControl
from spanvisor.control.log import ControlLog
from spanvisor.events import Decision, Event, HumanIntervention, question_digest, run_id_of
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream

TRACE = "ab" * 16
TASK = "T1"
APPROVALS = ("a1", "a2", "a3")

op = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(APPROVALS), st.sampled_from(["", "again", "expired"])),
    st.tuples(st.just("note"), st.sampled_from(APPROVALS)),
    st.tuples(
        st.just("person"),
        st.sampled_from(["approve", "reject"]),
        st.sampled_from((*APPROVALS, "zz")),
        st.sampled_from(["slack", "stale", "cli", "api"]),
        st.sampled_from("ab"),
    ),
    st.tuples(
        st.just("person"),
        st.sampled_from(["cancel", "retry", "acknowledge"]),
        st.none(),
        st.just("api"),
        st.sampled_from("ab"),
    ),
    st.tuples(st.just("replay")),
    st.tuples(st.just("restart")),
    st.tuples(st.just("end"), st.booleans()),
    st.tuples(st.just("rerun")),
)


class World:
    def __init__(self) -> None:
        self.store = InMemoryStateStore()
        self.tracker = TaskTracker()
        self.events: list[Event] = []
        self.a = self._control(self.tracker, self.events)
        self.b_events: list[Event] = []
        self.b = self._control(TaskTracker(), self.b_events)
        self.controls = [self.a, self.b]
        self.run_no = 1
        self.ended = False
        # Spans from 10 s ago: a request's timeout of a microsecond is past.
        self.t = time.time_ns() - 10_000_000_000
        # (run root, approval id) -> the digest of the question it was asked with
        self.asked: dict[tuple[str, str], str] = {}

    def _control(self, tracker: TaskTracker, sink: list[Event]) -> PipelineControl:
        holder: list[PipelineControl] = []

        def dispatch(evs: list[Event]) -> None:
            holder[0].observe(evs)
            sink.extend(evs)

        c = PipelineControl(tracker, dispatch, asyncio.get_running_loop)
        holder.append(c)
        c.attach(ControlLog(self.store))
        return c

    def restart_b(self) -> None:
        self.controls.append(self.b)
        self.b = self._control(TaskTracker(), self.b_events)

    @property
    def root(self) -> str:
        return f"{self.run_no:016x}"

    def span(self, n: int, name: str, attrs: dict[str, Any]) -> None:
        self.t += 1_000_000
        sid = f"{0xF000 + n:016x}"
        stamps = {cv.TASK_ROOT: self.root, cv.TASK_ID: TASK}
        span = SpanData(
            TRACE, sid, self.root, "step", self.t, self.t + 1, stamps, events=(SpanEventData(name, self.t, attrs),)
        )
        self.dispatch(self.tracker.span_ended(span))

    def dispatch(self, evs: list[Event]) -> None:
        self.a.observe(evs)
        self.events.extend(evs)

    def end(self, failed: bool) -> None:
        self.t += 1_000_000
        attrs = {cv.TASK_NAME: "deploy", cv.TASK_ID: TASK, cv.AGENT_ID: "rivet", cv.TASK_ROOT: self.root}
        root = SpanData(TRACE, self.root, None, "task", self.t - 500_000_000, self.t, attrs, error=failed)
        self.dispatch(self.tracker.span_ended(root))
        self.ended = True

    def shown_digest(self, channel: str, aid: str) -> str | None:
        """What the decider was shown of the request, as a digest."""
        if channel in ("api", "cli"):
            return None  # the API shows none; the CLI looks the request up (below)
        if channel == "stale":
            return question_digest(f"an older question {aid}?")
        views = [e.task for e in self.events if e.task.run_id]
        for r in views[-1].approvals if views else ():
            if r.approval_id == aid:
                return r.digest
        return question_digest(f"never asked {aid}?")


async def _run(ops: list[tuple[Any, ...]]) -> tuple[World, list[tuple[Decision, Any]]]:
    w = World()
    w.span(0, cv.EVENT_CHECKPOINT, {cv.PROGRESS: 1})
    verdicts: list[tuple[Decision, Any]] = []
    last: tuple[Decision, PipelineControl] | None = None
    for i, o in enumerate(ops, start=1):
        kind = o[0]
        if kind == "request" and not w.ended:
            _, aid, how = o
            question = f"ok {aid}?" if how != "again" else f"ok {aid}, asked again?"
            attrs: dict[str, Any] = {cv.APPROVAL_ID: aid, cv.APPROVAL_QUESTION: question}
            if how == "expired":
                attrs[cv.APPROVAL_TIMEOUT_S] = 0.000001
            w.span(i, cv.EVENT_APPROVAL_REQUEST, attrs)
            # The request's digest covers its task, run and approval id too.
            digest = approval_digest(
                agent="",
                task=TASK,
                run=run_id_of(TRACE, w.root),
                approval_id=aid,
                question=question,
                options=("approve", "reject"),
            )
            w.asked.setdefault((w.root, aid), digest)
        elif kind == "note" and not w.ended:
            w.span(i, cv.EVENT_APPROVAL_DECISION, {cv.APPROVAL_ID: o[1], cv.APPROVAL_OUTCOME: "timed_out"})
        elif kind == "person":
            _, action, aid, channel, where = o
            control = w.a if where == "a" else w.b
            # What A saw is in the store before anyone could be shown it (A
            # writes at once; a person takes longer than that).
            assert w.a.log is not None
            await w.a.sync.flush(w.a.log)
            digest = w.shown_digest(channel, aid) if aid else None
            if channel == "cli" and aid:
                rec = await control.run(TASK)
                found = runs.requests_of(rec).get(aid)
                digest = str(found.get("digest")) if found else None
            d = Decision(f"click-{i}", TASK, action, f"U{i}", time.time_ns(), approval_id=aid, digest=digest)
            v = await control.decide(d)
            verdicts.append((d, v))
            last = (d, control)
        elif kind == "replay" and last is not None:
            verdicts.append((last[0], await w.b.decide(last[0])))
        elif kind == "restart":
            w.restart_b()
        elif kind == "end" and not w.ended:
            w.end(o[1])
        elif kind == "rerun" and w.ended:
            w.run_no += 1
            w.ended = False
            w.span(1000 + i, cv.EVENT_CHECKPOINT, {cv.PROGRESS: 2})
    for c in [*w.controls, w.b]:
        await c.close()
    return w, verdicts


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=16))
def test_decisions_through_every_channel_replica_and_restart_tell_a_true_story(ops: list[tuple[Any, ...]]) -> None:
    w, verdicts = asyncio.run(_run(ops))
    for run_id in {e.task.run_id for e in w.events}:  # one task id, one stream per run
        check_stream([e for e in w.events if e.task.run_id == run_id])
    every = [e for e in (*w.events, *w.b_events) if isinstance(e, HumanIntervention)]
    applied = [e for e in every if e.outcome == "applied"]
    ids = [e.event_id for e in applied]
    assert len(ids) == len(set(ids)), "a decision was applied twice"
    answered = Counter((e.decision.run_id, e.decision.approval_id) for e in applied if e.decision.approval_id)
    assert all(n == 1 for n in answered.values()), ("a request got two answers", answered)
    for kind in ("cancel", "retry", "acknowledge"):
        per_run = Counter(e.decision.run_id for e in applied if e.decision.action == kind)
        assert all(n == 1 for n in per_run.values()), kind
    run_roots = {e.task.run_id: e.task.root_span_id for e in w.events if e.task.run_id}
    for e in applied:
        d = e.decision
        if d.action in ("approve", "reject"):
            asked = w.asked.get((run_roots.get(d.run_id, "?"), d.approval_id or ""))
            assert asked is not None, ("applied to a request never asked", d)
            assert e.request is not None and e.request.digest == asked, "applied to another question"
            assert d.digest in (None, asked), "applied though the decider saw another question"
    # Every refusal is audited, once, with its reason; replays are not audited again.
    for d, v in verdicts:
        if not v.ok:
            assert v.reason, v
            audits = [e for e in every if e.event_id == d.intervention_id and e.outcome == "denied"]
            if v.outcome == "denied" and v.code is not None:
                assert len(audits) == 1 and audits[0].reason and audits[0].code, (d, v, audits)
        again = [x for y, x in verdicts if y is d][1:]
        assert all(x.outcome != "applied" for x in again), ("a replay was applied", d)
    denied_ids = [e.event_id for e in every if e.outcome == "denied"]
    assert len(denied_ids) == len(set(denied_ids)), "a refusal was audited twice"
    # A decision on a request not yet asked (or never) never applies to it.
    asked_at: dict[str, int] = {}
    for i, o in enumerate(ops, start=1):
        if o[0] == "request":
            asked_at.setdefault(o[1], i)
    for d, v in verdicts:
        if v.outcome == "applied" and d.approval_id:
            n = int(d.intervention_id.split("-")[1])
            assert asked_at.get(d.approval_id, 10**9) < n, ("applied before it was asked", d)
    # The agent reads at most one answer per request, and the record agrees.
    for run_id in {e.task.run_id for e in w.events if e.task.run_id}:
        rec = asyncio.run(_record(w, run_id))
        got = Counter(d.approval_id for d in runs.decisions_of(rec) if d.approval_id)
        assert all(n == 1 for n in got.values()), got
        for aid, req in runs.requests_of(rec).items():
            assert (req.get("state") == "decided") == (got.get(aid) == 1), (aid, req, got)
    for prev, e in itertools.pairwise(w.events):
        if prev.task.cancel_requested and prev.task.run_id == e.task.run_id:
            assert e.task.cancel_requested, "a cancel was forgotten"


async def _record(w: World, run_id: str) -> Any:
    return await ControlLog(w.store).record(TASK, run_id)
