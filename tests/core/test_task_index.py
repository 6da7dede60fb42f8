"""The tracker's task-id index agrees with a scan of what it holds.

A decision or a control-API read finds its task through
``TaskTracker.states_of`` (an index), not by scanning ``states()``; whatever
opens, finishes, is evicted or ages out, both must name the same states.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.tracking.edges import LATE_WINDOW_S, MAX_CLOSED, ClosedTasks
from spanvisor.tracking.taskindex import TaskIndex
from spanvisor.tracking.tracker import TaskTracker

IDS = ["t0", "t1", "t2", "t3"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _root(n: int, task_id: str, end: bool) -> SpanData:
    attrs = {cv.TASK_ID: task_id, "agent.id": "a", cv.TASK_ROOT: f"{n:016x}"}
    return SpanData(f"{n:032x}", f"{n:016x}", None, "task", 10 + n, 20 + n if end else None, attrs)


def _scan(tracker: TaskTracker, task_id: str) -> tuple[set[int], set[int]]:
    open_states, closed_states = tracker.states()
    return (
        {id(s) for s in open_states if s.working["task_id"] == task_id},
        {id(s) for s in closed_states if s.working["task_id"] == task_id},
    )


ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.sampled_from(IDS)),
        st.tuples(st.just("finish"), st.integers(0, 40)),
        st.tuples(st.just("age"), st.sampled_from([1.0, LATE_WINDOW_S + 1])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, max_open=st.integers(1, 5))
def test_states_of_agrees_with_a_scan(ops: list[tuple[str, object]], max_open: int) -> None:
    clock = Clock()
    tracker = TaskTracker(max_open_tasks=max_open, clock=clock, wall_clock=lambda: 123)
    opened: dict[int, str] = {}
    for op, arg in ops:
        if op == "open":
            n = len(opened) + 1
            opened[n] = str(arg)
            tracker.span_ended(
                SpanData(
                    f"{n:032x}",
                    f"{n + 100:016x}",
                    f"{n:016x}",
                    "c",
                    11,
                    12,
                    {cv.TASK_ID: str(arg), cv.TASK_ROOT: f"{n:016x}", "agent.progress": 10},
                )
            )
        elif op == "finish" and opened:
            n = int(arg) % len(opened) + 1  # type: ignore[call-overload]
            tracker.span_ended(_root(n, opened[n], end=True))
        elif op == "age":
            clock.now += float(arg)  # type: ignore[arg-type]
            tracker.expire()
        for task_id in IDS:
            open_states, closed_states = tracker.states_of(task_id)
            assert ({id(s) for s in open_states}, {id(s) for s in closed_states}) == _scan(tracker, task_id)


def test_the_index_stays_bounded_by_what_is_held() -> None:
    clock = Clock()
    tracker = TaskTracker(max_open_tasks=10, clock=clock, wall_clock=lambda: 123)
    for n in range(1, 20_001):
        tracker.span_ended(_root(n, f"task-{n}", end=True))
        if n % 1000 == 0:
            clock.now += LATE_WINDOW_S + 1
            tracker.expire()
    # Rebuilt on an add once it outgrows what is held: never more than that bound.
    assert len(tracker.tasks.by_task) <= 2 * (10 + MAX_CLOSED) + 1025
    tracker.span_ended(_root(20_001, "task-last", end=True))
    assert tracker.states_of("task-last")[1] and tracker.states_of("task-1") == ([], [])


def test_one_id_for_several_tasks() -> None:
    index = TaskIndex()
    index.add("t", ("a", "1"), {}, ClosedTasks())
    index.add("t", ("b", "2"), {}, ClosedTasks())
    index.add("t", ("a", "1"), {}, ClosedTasks())
    assert len(index) == 1
