"""Provisional tasks (docs/reference/conventions.md#provisional-tasks), on the pure
TaskTracker: random span trees delivered children first, in random batches,
traces interleaved, each batch settled as the pipeline settles it.

* every task ends as it ends when its root decides it (today's order, the
  same delivery without provisional tasks), field by field;
* a task shown before its root arrived is never a second task of its root,
  and when it was shown under its root its ids are the root's;
* a root that never comes leaves its task lost, once, never twice;
* a trace that does not look like an agent run shows nothing anywhere (so
  it never reaches Slack), and is counted as held back; one that does is one
  task, rooted at its top span, with every model call of it.

Real paths (processor, exporter, receiver) are ``test_paths_properties``'s.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import Checkpoint, Event, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.tracking.settings import StallSettings, TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import (
    check_stream,
    check_task_roots,
    expected_roots,
    final_states_by_root,
    looks_like_an_agent_run,
    only,
    rooted,
)
from ._strategies import agentless_traces, traces
from ._trees import FakeClock, SpanSpec, by_task, end_order, feed_end_order

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

trees = st.one_of(
    traces(root_parent=True, parallel=True),
    traces(root_parent=True, skew=True, ends_out_of_order=True),
    traces(late_roots=True, max_children=10),
)


def _ids(events: list[Event], kinds: tuple[type[Event], ...]) -> set[str]:
    return {
        e.event_id for e in events if isinstance(e, kinds) or (isinstance(e, Checkpoint) and e.source == "model_call")
    }


@FAST
@given(specs=trees, seed=st.integers(0, 2**32), batch=st.integers(1, 9))
def test_a_task_shown_before_its_root_ends_as_its_root_decides_it(specs: list[SpanSpec], seed: int, batch: int) -> None:
    clock = FakeClock()
    shown = feed_end_order(TaskTracker(clock=clock), specs, random.Random(seed), False, clock, batch, settle=True)
    clock = FakeClock()
    today = feed_end_order(TaskTracker(clock=clock), specs, random.Random(seed), False, clock, batch)
    check_stream(shown, all_finished=True)
    traces_ = check_task_roots(shown, specs)
    assert only(final_states_by_root(shown, specs), traces_) == only(final_states_by_root(today, specs), traces_)
    # Shown under its root: the root's task id, and the same ids for its start, calls and end.
    today_runs = by_task(today)
    for run, evs in by_task(shown).items():
        first = evs[0]
        assert isinstance(first, TaskStarted)
        if run in today_runs and first.task.trace_id in traces_:
            want = _ids(today_runs[run], (TaskStarted, TaskFinished))
            assert _ids(evs, (TaskStarted, TaskFinished)) == want, run


@FAST
@given(specs=traces(root_parent=True, max_children=10), seed=st.integers(0, 2**32), batch=st.integers(1, 9))
def test_a_root_that_never_comes_leaves_its_task_lost_once(specs: list[SpanSpec], seed: int, batch: int) -> None:
    roots = expected_roots(specs)
    by_id = {(s.trace_id, s.span_id): s for s in specs}
    gone: set[tuple[str, str]] = set()
    for key in roots:  # the root and what is above it never arrive (the agent died)
        node = by_id.get(key)
        while node is not None:
            gone.add((node.trace_id, node.span_id))
            node = by_id.get((node.trace_id, node.parent_id)) if node.parent_id else None
    left = [s for s in specs if (s.trace_id, s.span_id) not in gone]
    clock = FakeClock()
    settings_ = TrackerSettings(stalls=StallSettings(after_s=600.0, lost_after_s=3_600.0))
    tracker = TaskTracker(settings_, clock=clock)
    order = end_order(left, random.Random(seed))
    events: list[Event] = []
    for i in range(0, len(order), batch):
        for s in order[i : i + batch]:
            events += tracker.span_ended(s.data(None, stamped=False))
        events += tracker.settle()
        events += tracker.expire()
    for _ in range(8):  # the hour passes: stalled, then lost
        clock.advance(600.0)
        events += tracker.expire()
    check_stream(events, all_finished=True)
    started = [
        (e.task.provisional, rooted(specs, e.task.trace_id, e.task.root_span_id))
        for e in events
        if isinstance(e, TaskStarted)
    ]
    assert {root for _, root in started} <= roots
    shown = [root for provisional, root in started if provisional]
    assert len(shown) == len(set(shown)), "a root's task shown twice"
    # Every task finished once (check_stream): one shown before a root that
    # never came is lost, or failed (a step right under its root failed:
    # TaskState.unended), or, shown under an agent span held for its
    # ancestry, ends as that span's task once its hold runs out (as before:
    # so do agent spans nested under a root that never comes).
    for run, evs in by_task(events).items():
        if evs[0].task.provisional:
            (end,) = [e for e in evs if isinstance(e, TaskFinished)]
            unended = end.outcome == "error" and "never ended" in " ".join(end.notes)
            assert end.outcome == "lost" or unended or not end.task.provisional, run
    assert tracker.open_tasks == 0


@FAST
@given(specs=agentless_traces(), seed=st.integers(0, 2**32), batch=st.integers(1, 9))
def test_a_trace_that_is_no_agent_run_shows_nothing(specs: list[SpanSpec], seed: int, batch: int) -> None:
    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    events = feed_end_order(tracker, specs, random.Random(seed), False, clock, batch, settle=True)
    check_stream(events, all_finished=True)
    traces_: dict[str, list[SpanSpec]] = {}
    for s in specs:
        traces_.setdefault(s.trace_id, []).append(s)
    held_back = 0
    for trace_id, spans in traces_.items():
        mine = [e for e in events if e.task.trace_id == trace_id]
        calls = [s for s in spans if cv.is_model_call(s.attrs_at(s.end_ns, stamped=False))]
        if not looks_like_an_agent_run(spans):
            # Nothing anywhere: no sink (Slack, the audit trail, metrics) gets an event of it.
            assert mine == [], trace_id
            held_back += bool(calls)
            continue
        # One task, rooted at the trace's top span, with every model call of it.
        (end,) = [e for e in mine if isinstance(e, TaskFinished)]
        top = next(s for s in spans if s.parent_id is None)
        assert rooted(specs, trace_id, end.task.root_span_id) == (trace_id, top.span_id)
        assert end.task.input_tokens == sum(s.updates[0][1][cv.GEN_AI_INPUT] for s in calls)
        assert end.task.task_name == top.name and not end.task.provisional
    assert tracker.stats.value("provisional_tasks_total", outcome="held_back") == held_back
