"""Late is about when a span ended, not when it arrived.

A checkpoint that ended before its root but arrived after it (another
replica held it, a Collector retried a batch) belongs to the task's story:
its events are kept, as the facts of one ``TaskCorrected``, with the ids
and times they would have had, and the final totals are those of the spans
in order. Before the rule, such a span that changed no total caused nothing
and its "step 3" was lost from the audit trail. Work that ended after the
root keeps the older rule: its totals only.
"""

from __future__ import annotations

from tests.core._trees import FakeClock, SpanSpec, stamp_trees

from spanvisor.events import Checkpoint, Event, TaskCorrected, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanEventData
from spanvisor.tracking.tracker import TaskTracker

TRACE = "cd" * 16
ROOT = "00000000000000c0"


def _task() -> list[SpanSpec]:
    """A root (ends at 100 µs) and three steps, each a checkpoint; the
    second a model call too."""
    root = SpanSpec(TRACE, ROOT, None, "Repair F47", 1_000, 100_000)
    root.start_attrs = {cv.TASK_NAME: "Repair F47", cv.AGENT_ID: "rivet", cv.TASK_ID: "T-late-arrivals"}
    specs = [root]
    for i in range(3):
        c = SpanSpec(TRACE, f"{i + 1:016x}", ROOT, f"step {i + 1}", 10_000 * (i + 1), 10_000 * (i + 1) + 5_000)
        c.events = [SpanEventData(cv.EVENT_CHECKPOINT, c.start_ns + 1, {"message": f"step {i + 1}"})]
        if i == 1:
            c.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 700, cv.GEN_AI_OUTPUT: 7}
        specs.append(c)
    stamp_trees(specs)
    return specs


def _feed(tracker: TaskTracker, specs: list[SpanSpec]) -> list[Event]:
    return [e for s in specs for e in tracker.span_ended(s.data(None, stamped=True))]


def _told(events: list[Event]) -> list[Event]:
    """Every event of the story: those emitted, and the facts of corrections."""
    out: list[Event] = []
    for e in events:
        out.append(e)
        if isinstance(e, TaskCorrected):
            out.extend(e.facts)  # type: ignore[arg-type]
    return out


def _checkpoints(events: list[Event]) -> list[tuple[str, str, int]]:
    return sorted(
        (e.event_id, str(e.task.message), e.time_ns)
        for e in _told(events)
        if isinstance(e, Checkpoint) and e.source == "event"
    )


def test_a_step_that_ended_before_its_root_but_arrived_after_it_is_kept() -> None:
    root, c1, c2, c3 = _task()
    in_order = _feed(TaskTracker(clock=FakeClock()), [c1, c2, c3, root])
    tracker = TaskTracker(clock=FakeClock())
    events = _feed(tracker, [c1, root]) + _feed(tracker, [c2]) + _feed(tracker, [c3])
    kinds = [e.kind for e in events]
    assert kinds[0] == "TaskStarted" and kinds[-2:] == ["TaskCorrected", "TaskCorrected"]
    assert kinds.index("TaskFinished") == len(kinds) - 3  # the last task-state event: never reopened
    # Every checkpoint once, with the id and time it has when it comes in order.
    assert _checkpoints(events) == _checkpoints(in_order)
    assert sorted(m for _, m, _ in _checkpoints(events)) == ["step 1", "step 2", "step 3"]
    second, third = events[-2], events[-1]
    assert isinstance(second, TaskCorrected) and isinstance(third, TaskCorrected)
    assert second.arrived_late and third.arrived_late
    assert [f.kind for f in second.facts] == ["Checkpoint", "Checkpoint"]  # its checkpoint, its model call
    assert [f.kind for f in third.facts] == ["Checkpoint"]
    assert second.added_input_tokens == 700 and third.added_input_tokens == 0
    # The facts carry their own times, the correction's seq, and the finished status.
    finished = next(e for e in events if isinstance(e, TaskFinished))
    for c in (second, third):
        assert c.task.status == "complete" and c.task.ended_ns == finished.task.ended_ns
        assert all(f.time_ns < finished.time_ns and f.task.seq == c.task.seq for f in c.facts)
    assert third.task.seq == second.task.seq + 1 == finished.task.seq + 2
    # The final totals are those of the spans in order.
    final = third.task
    want = in_order[-1].task
    assert (final.input_tokens, final.output_tokens, final.cost_usd) == (
        want.input_tokens,
        want.output_tokens,
        want.cost_usd,
    )
    # Counted by how late they came, as arrived late (not outlived).
    h = tracker.stats.histograms[("late_span_arrival_seconds", (("kind", "arrived_late"),))]
    assert h.count == 2 and h.buckets == (1.0, 10.0, 60.0, 600.0)
    # A resend is a duplicate: nothing twice.
    assert _feed(tracker, [c3]) == []


def test_two_replicas_keep_every_checkpoint_once() -> None:
    """The issue's reproducer: [child1, root] -> A, [child2] -> B, [child3] -> A."""
    root, c1, c2, c3 = _task()
    in_order = _feed(TaskTracker(clock=FakeClock()), [c1, c2, c3, root])
    a, b = TaskTracker(clock=FakeClock()), TaskTracker(clock=FakeClock())
    on_a = _feed(a, [c1, root])
    on_b = _feed(b, [c2])
    on_a += _feed(a, [c3])
    # B opened the task from its stamped child (a partial task): its events on time.
    assert [e.kind for e in on_b] == ["TaskStarted", "Checkpoint", "Checkpoint"]
    assert isinstance(on_b[0], TaskStarted)
    # Rows are keyed by event id: what both replicas wrote, each id once, is every checkpoint.
    rows = {e.event_id: e for e in _told(on_a + on_b) if isinstance(e, Checkpoint) and e.source == "event"}
    assert sorted((i, str(e.task.message), e.time_ns) for i, e in rows.items()) == _checkpoints(in_order)
    assert isinstance(on_a[-1], TaskCorrected) and on_a[-1].arrived_late


def test_work_that_ended_after_its_root_corrects_the_totals_only() -> None:
    root, c1, c2, _ = _task()
    c2.start_ns, c2.end_ns = 200_000, 300_000  # outlived the root (ended at 100 µs)
    c2.events = [SpanEventData(cv.EVENT_CHECKPOINT, 200_001, {"message": "after the end"})]
    tracker = TaskTracker(clock=FakeClock())
    events = _feed(tracker, [c1, root]) + _feed(tracker, [c2])
    corrected = events[-1]
    assert isinstance(corrected, TaskCorrected)
    assert not corrected.arrived_late and corrected.facts == () and corrected.added_input_tokens == 700
    h = tracker.stats.histograms[("late_span_arrival_seconds", (("kind", "outlived"),))]
    assert h.count == 1
