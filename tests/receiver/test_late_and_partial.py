"""The tracker at a replica's edges: spans later than their task's root
correct its totals (TaskCorrected), never reopening it; a task this replica never sees the
root of stops being open here after the idle time, and continues if more
of its spans come."""

from __future__ import annotations

from tests.core._trees import FakeClock, SpanSpec, stamp_trees

from spanvisor.events import Checkpoint, Event, TaskCorrected, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanEventData
from spanvisor.tracking.edges import LATE_WINDOW_S
from spanvisor.tracking.tracker import TaskTracker

TRACE = "ab" * 16
ROOT = "00000000000000a0"


def _task(children: int = 3) -> list[SpanSpec]:
    """A root and ``children`` model calls, each with a checkpoint event."""
    root = SpanSpec(TRACE, ROOT, None, "Diagnose F47", 1_000, 100_000)
    root.start_attrs = {cv.TASK_NAME: "Diagnose F47", cv.AGENT_ID: "rivet", cv.TASK_ID: "T-47"}
    specs = [root]
    for i in range(children):
        c = SpanSpec(TRACE, f"{i + 1:016x}", ROOT, "chat", 10_000 * (i + 1), 10_000 * (i + 1) + 5_000)
        c.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 100 * (i + 1), cv.GEN_AI_OUTPUT: 1}
        c.events = [SpanEventData(cv.EVENT_CHECKPOINT, c.start_ns + 1, {"message": f"step {i}"})]
        specs.append(c)
    stamp_trees(specs)
    return specs


def _kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def test_a_child_after_its_root_is_written_and_corrects_the_finished_view() -> None:
    root, c1, c2 = _task(2)
    tracker = TaskTracker(clock=FakeClock())
    events = tracker.span_ended(c1.data(None, stamped=True))
    events += tracker.span_ended(root.data(None, stamped=True))
    finished = events[-1]
    assert isinstance(finished, TaskFinished) and finished.task.input_tokens == 100
    late = tracker.span_ended(c2.data(None, stamped=True))
    # One correction of the finished view's totals (the late-span rule): its
    # checkpoint event and model-call checkpoint are not said after the end.
    assert _kinds(late) == ["TaskCorrected"]
    (corrected,) = late
    assert isinstance(corrected, TaskCorrected) and corrected.added_input_tokens == 200
    assert corrected.task.status == "complete" and corrected.task.ended_ns == finished.task.ended_ns
    assert corrected.task.input_tokens == 300 and corrected.task.seq == finished.task.seq + 1
    assert corrected.time_ns >= finished.time_ns
    # The same totals as when it arrives in time.
    in_time = TaskTracker(clock=FakeClock())
    ordered = [e for s in (c1, c2, root) for e in in_time.span_ended(s.data(None, stamped=True))]
    assert corrected.task.input_tokens == ordered[-1].task.input_tokens
    assert tracker.stats.value("late_spans_total") == 1
    # Never reopened, and a resend adds nothing.
    assert tracker.span_ended(c2.data(None, stamped=True)) == []
    assert tracker.span_ended(root.data(None, stamped=True)) == []
    assert tracker.open_tasks == 0


def test_an_unstamped_child_after_its_root_is_written() -> None:
    root, c1 = _task(1)
    tracker = TaskTracker(clock=FakeClock())
    events = tracker.span_ended(root.data(None, stamped=False))
    assert _kinds(events)[0] == "TaskStarted" and _kinds(events)[-1] == "TaskFinished"
    late = tracker.span_ended(c1.data(None, stamped=False))
    assert _kinds(late) == ["TaskCorrected"] and late[-1].task.input_tokens == 100


def test_late_spans_past_the_window_are_dropped_and_counted() -> None:
    root, c1 = _task(1)
    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    tracker.span_ended(root.data(None, stamped=True))
    clock.advance(LATE_WINDOW_S + 1)
    tracker.expire()
    assert tracker.span_ended(c1.data(None, stamped=True)) == []
    assert tracker.stats.value("dropped_total", reason="late_span", sink="") == 1


def test_the_minimal_reproducer_on_two_trackers() -> None:
    """A gets [child1, root] then child3; B gets child2 and never the root."""
    root, c1, c2, c3 = _task(3)
    clock = FakeClock()
    a, b = TaskTracker(clock=clock, root_hold_s=30), TaskTracker(clock=clock, root_hold_s=30)
    on_a = a.span_ended(c1.data(None, stamped=True)) + a.span_ended(root.data(None, stamped=True))
    on_b = b.span_ended(c2.data(None, stamped=True))
    on_a += a.span_ended(c3.data(None, stamped=True))
    assert sum(isinstance(e, TaskStarted) for e in on_a) == 1
    assert sum(isinstance(e, TaskFinished) for e in on_a + on_b) == 1
    checkpoints = {e.event_id for e in on_a + on_b if isinstance(e, Checkpoint) and e.source == "event"}
    assert len(checkpoints) == 2  # child3 came after the root: a correction of A's finished view
    assert [e.task.input_tokens for e in on_a if isinstance(e, TaskCorrected)] == [400]
    assert a.stats.value("dropped_total", reason="late_span", sink="") == 0
    assert (a.open_tasks, b.open_tasks) == (0, 1)
    # B holds only a child: after the idle time it is no longer open there.
    clock.advance(31)
    assert b.expire() == []
    assert b.open_tasks == 0
    assert b.stats.value("evicted_tasks_total", reason="partial") == 1


def test_a_sleeping_partial_task_continues_where_it_was() -> None:
    root, c1, c2 = _task(2)
    clock = FakeClock()
    tracker = TaskTracker(clock=clock, root_hold_s=5)
    first = tracker.span_ended(c1.data(None, stamped=True))
    clock.advance(6)
    tracker.expire()
    assert tracker.open_tasks == 0
    later = tracker.span_ended(c2.data(None, stamped=True)) + tracker.span_ended(root.data(None, stamped=True))
    # No second TaskStarted; seq and totals go on from where they were.
    assert not any(isinstance(e, TaskStarted) for e in later)
    assert later[0].task.seq == first[-1].task.seq + 1
    assert isinstance(later[-1], TaskFinished) and later[-1].task.input_tokens == 300
    assert later[-1].task.task_name == "Diagnose F47"


def test_a_descendant_that_can_cause_nothing_opens_nothing() -> None:
    root, _ = _task(1)
    plain = SpanSpec(TRACE, "00000000000000f1", ROOT, "GET /x", 2_000, 3_000)
    plain.start_attrs = {"http.request.method": "GET"}
    stamp_trees([root, plain])
    tracker = TaskTracker(clock=FakeClock())
    assert tracker.span_ended(plain.data(None, stamped=True)) == []
    assert tracker.open_tasks == 0
