"""People's decisions and the agent's own spans, interleaved at random.

Requests open (span events on children), people approve, reject, cancel,
retry or acknowledge through the pipeline's control (checked against the
tracker, recorded once in the shared decision log), the agent notes answers
it read, clicks are replayed and raced by a second person, and the root ends
somewhere in between. Whatever the order: the task's stream passes the one
stream checker, each approval gets at most one applied answer, an applied
answer only ever closes a request that was open, a replay changes nothing,
and a cancel, once applied, stays visible.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.control.log import ControlLog
from spanvisor.events import Decision, Event, HumanIntervention, TaskFinished
from spanvisor.pipeline.control import PipelineControl
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.statestore import InMemoryStateStore
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream

TRACE = "ab" * 16
ROOT = "1" * 16
TASK = "T1"
APPROVALS = ("a1", "a2", "a3")

op = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(APPROVALS)),
    st.tuples(st.just("note"), st.sampled_from(APPROVALS)),
    st.tuples(st.just("person"), st.sampled_from(["approve", "reject"]), st.sampled_from(APPROVALS), st.integers(1, 3)),
    st.tuples(st.just("person"), st.sampled_from(["cancel", "retry", "acknowledge"]), st.none(), st.integers(1, 3)),
    st.tuples(st.just("replay")),
    st.tuples(st.just("end"), st.booleans()),
)


def _root(t: int, end: int | None, failed: bool = False) -> SpanData:
    attrs = {cv.TASK_NAME: "deploy", cv.TASK_ID: TASK, cv.AGENT_ID: "rivet", cv.TASK_ROOT: ROOT}
    return SpanData(TRACE, ROOT, None, "task", t, end, attrs, error=failed)


def _child(n: int, t: int, name: str, attrs: dict[str, Any]) -> SpanData:
    sid = f"{n + 2:016x}"
    stamps = {cv.TASK_ROOT: ROOT, cv.TASK_ID: TASK}
    return SpanData(TRACE, sid, ROOT, "step", t, t + 1, stamps, events=(SpanEventData(name, t, attrs),))


async def _run(ops: list[tuple[Any, ...]]) -> tuple[list[Event], list[tuple[Decision, str]]]:
    tracker = TaskTracker()
    events: list[Event] = []
    control = PipelineControl(tracker, events.extend, asyncio.get_running_loop)
    control.attach(ControlLog(InMemoryStateStore()))
    verdicts: list[tuple[Decision, str]] = []
    t = 1_000_000_000
    events.extend(tracker.span_ended(_child(0, t, cv.EVENT_CHECKPOINT, {cv.PROGRESS: 1})))
    last: Decision | None = None
    for i, o in enumerate(ops, start=1):
        t += 1_000_000
        if o[0] == "request":
            attrs = {cv.APPROVAL_ID: o[1], cv.APPROVAL_QUESTION: f"ok {o[1]}?"}
            events.extend(tracker.span_ended(_child(i, t, cv.EVENT_APPROVAL_REQUEST, attrs)))
        elif o[0] == "note":
            attrs = {cv.APPROVAL_ID: o[1], cv.APPROVAL_OUTCOME: "timed_out"}
            events.extend(tracker.span_ended(_child(i, t, cv.EVENT_APPROVAL_DECISION, attrs)))
        elif o[0] == "person":
            _, action, aid, who = o
            last = Decision(f"click-{i}", TASK, action, f"U{who}", t, approval_id=aid, source="slack")
            verdicts.append((last, (await control.decide(last)).outcome))
        elif o[0] == "replay" and last is not None:
            verdicts.append((last, (await control.decide(last)).outcome))
        elif o[0] == "end":
            events.extend(tracker.span_ended(_root(999_000_000, t, failed=o[1])))
    return events, verdicts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=14))
def test_decisions_and_spans_interleaved_tell_a_true_story(ops: list[tuple[Any, ...]]) -> None:
    events, verdicts = asyncio.run(_run(ops))
    check_stream(events)
    applied = [e for e in events if isinstance(e, HumanIntervention) and e.outcome == "applied"]
    ids = [e.event_id for e in applied]
    assert len(ids) == len(set(ids)), "a replayed click was applied twice"
    answered = [e.decision.approval_id for e in applied if e.decision.action in ("approve", "reject")]
    assert len(answered) == len(set(answered)), "an approval got two answers"
    for kind in ("cancel", "retry", "acknowledge"):
        assert sum(e.decision.action == kind for e in applied) <= 1, kind
    stream = [e for e in events if not (isinstance(e, HumanIntervention) and not e.known)]
    for prev, e in itertools.pairwise(stream):
        if isinstance(e, HumanIntervention) and e.decision.action in ("approve", "reject"):
            assert e.decision.approval_id in {r.approval_id for r in prev.task.approvals}, "closed a request not open"
            assert e.decision.approval_id not in {r.approval_id for r in e.task.approvals}
        if prev.task.cancel_requested:
            assert e.task.cancel_requested, "a cancel was forgotten"
    finished = [e for e in events if isinstance(e, TaskFinished)]
    for d, outcome in verdicts:
        if outcome == "applied" and d.action in ("retry", "acknowledge"):
            # Only a failed, finished task takes these (pipeline/control.py refusal).
            assert finished and finished[0].outcome == "error" and finished[0].time_ns <= d.time_ns + 1
    for d in {id(d): d for d, _ in verdicts}.values():
        again = [o for x, o in verdicts if x is d][1:]
        assert "applied" not in again, ("a replay was applied", d, again)
