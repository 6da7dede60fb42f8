"""A provisional task takes the id its root names, whenever the root arrives.

On the end-order paths a task shows from its model and tool calls, under a
derived ``<trace>-<span>`` id, before its root arrives (tracking/provisional.py).
When the root then names its ``agent.task.id`` in a later batch, the task is
renamed: from the root's events on it carries that id, its views naming the
derived one as ``former_id`` (every sink moves what it keeps of the run), and
a lookup by either id finds it. Property on the pure TaskTracker, each batch
settled as the pipeline settles it; the receiver's end to end is
``tests/receiver/test_provisional_rename.py``.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import Event, TaskFinished
from spanvisor.pipeline.taskhold import TaskHold
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.tracking.tasktable import default_task_id
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock

TRACE = "cd" * 16
ROOT = "00000000000000aa"
SVC = {"service.name": "fixer"}
DERIVED = default_task_id(TRACE, ROOT)
CHAT = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o", cv.GEN_AI_INPUT: 100, cv.GEN_AI_OUTPUT: 5}
TOOL = {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "run"}


def _work(kinds: list[str]) -> list[SpanData]:
    return [
        SpanData(
            TRACE,
            f"{i + 1:016x}",
            ROOT,
            kind,
            2_000 + 100 * i,
            2_050 + 100 * i,
            CHAT if kind == "chat" else TOOL,
            resource=SVC,
        )
        for i, kind in enumerate(kinds)
    ]


def _root(attrs: dict[str, Any]) -> SpanData:
    return SpanData(
        TRACE, ROOT, None, "agent.task Fix the build", 1_000, 90_000, {cv.AGENT_ID: "fixer", **attrs}, resource=SVC
    )


def _run(batches: list[list[SpanData]]) -> tuple[TaskTracker, list[Event]]:
    tracker = TaskTracker(clock=FakeClock())
    events: list[Event] = []
    for batch in batches:
        for span in batch:
            events += tracker.span_ended(span)
        events += tracker.settle()
    return tracker, events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(["chat", "tool"]), min_size=2, max_size=8).filter(lambda k: "chat" in k),
    seed=st.integers(0, 2**32),
    task_id=st.sampled_from(["fix-build-42", "Fix build #42", "x" * 300]),
)
def test_a_provisional_task_takes_the_id_its_root_names_in_a_later_batch(
    kinds: list[str], seed: int, task_id: str
) -> None:
    rng = random.Random(seed)
    work = _work(kinds)
    rng.shuffle(work)
    batches: list[list[SpanData]] = []
    rest = work
    while rest:
        k = rng.randint(1, len(rest))
        batches.append(rest[:k])
        rest = rest[k:]
    batches.append([_root({cv.TASK_ID: task_id, cv.TASK_NAME: "Fix the build", cv.PROGRESS: 100})])
    tracker, events = _run(batches)
    assert events, kinds
    shown = tracker.stats.value("provisional_tasks_total", outcome="shown")
    final = events[-1]
    assert isinstance(final, TaskFinished)
    new_id = final.task_id
    assert new_id != DERIVED and new_id.startswith(task_id[:64])
    assert final.task.progress == 100
    if shown:
        # Shown before its root: the derived id until the root's events, then the root's, for good.
        first = next(i for i, e in enumerate(events) if e.task_id == new_id)
        assert {e.task_id for e in events[:first]} == {DERIVED}
        assert all(e.task_id == new_id and e.task.former_id == DERIVED for e in events[first:])
        assert tracker.stats.value("provisional_tasks_total", outcome="renamed") == 1
    else:  # nothing shown before the root: its id from the start, never renamed
        assert all(e.task_id == new_id and e.task.former_id is None for e in events)
    assert len({e.event_id for e in events}) == len(events)  # nothing doubled
    assert {e.task.run_id for e in events} == {final.task.run_id}
    # Either id finds the task: a decision or an agent naming the one it saw.
    for name in (new_id, DERIVED) if shown else (new_id,):
        open_states, closed = tracker.states_of(name)
        assert [s.working.run_id for s in (*open_states, *closed)] == [final.task.run_id]
    # A replay of the same batches decides alike: the same ids, so every sink stays idempotent.
    assert [e.event_id for e in _run(batches)[1]] == [e.event_id for e in events]


def test_a_root_naming_no_id_keeps_the_derived_one() -> None:
    _, events = _run([_work(["chat", "tool", "chat"]), [_root({cv.TASK_NAME: "Fix the build"})]])
    assert {e.task_id for e in events} == {DERIVED}
    assert all(e.task.former_id is None for e in events)


def test_an_empty_or_same_id_renames_nothing() -> None:
    for named in ("", DERIVED):
        tracker, events = _run([_work(["chat", "tool"]), [_root({cv.TASK_ID: named})]])
        assert {e.task_id for e in events} == {DERIVED}, named
        assert tracker.stats.value("provisional_tasks_total", outcome="renamed") == 0


def test_a_held_task_waits_behind_its_suspect_across_the_rename() -> None:
    """A sink worker holding a task's failing event holds its later events
    too, in order: those after the rename (another task id) are the same task's."""
    _, events = _run([_work(["chat", "tool"]), [_root({cv.TASK_ID: "fix-42"})]])
    before = [e for e in events if e.task_id == DERIVED]
    after = [e for e in events if e.task_id == "fix-42"]
    assert before and after
    hold = TaskHold(clock=FakeClock())
    hold.hold(before[0])
    assert hold.divert([*before[1:], *after]) == []
    assert hold.release() == [*before, *after]
