"""Task id -> the keys of the tasks opened under it.

A person's decision, or an agent long-polling the control API, names a task
by its id; the tracker holds tasks by (trace id, root span id). Scanning up
to 12,000 held states on the pipeline's loop per decision was the cost this
index removes. One id usually names one task, so the value is the key itself
and a list only when an id is reused. Keys of tasks no longer held are
dropped by a rebuild once they outnumber the held ones: amortised O(1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spanvisor.tracking.edges import ClosedTasks
    from spanvisor.tracking.taskstate import TaskState

Key = tuple[str, str]  # (trace id, root span id): the tracker's key of a task


class TaskIndex:
    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[str, Key | list[Key]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, task_id: str, key: Key, tasks: Mapping[Key, TaskState], closed: ClosedTasks) -> None:
        """Index a task opened (or woken) under ``key``; ``tasks`` and
        ``closed`` are what the tracker holds, for the rebuild."""
        self._add(task_id, key)
        if len(self._keys) > 2 * (len(tasks) + len(closed)) + 1024:
            # A sleeping partial task is not held: indexed again as it wakes.
            self._keys = {}
            for st in (*tasks.values(), *closed.states()):
                w = st.working
                self._add(w.task_id, (w.trace_id, w.root_span_id))
                if w.former_id is not None:
                    self._add(w.former_id, (w.trace_id, w.root_span_id))

    def _add(self, task_id: str, key: Key) -> None:
        found = self._keys.get(task_id)
        if found is None or found == key:
            self._keys[task_id] = key
        elif isinstance(found, tuple):
            self._keys[task_id] = [found, key]
        elif key not in found:
            found.append(key)

    def states(
        self, task_id: str, tasks: Mapping[Key, TaskState], closed: ClosedTasks, now: float
    ) -> tuple[list[TaskState], list[TaskState]]:
        """The open states with this id, then the just-finished ones (those
        ``closed`` still returns at ``now``). When one id names several open
        tasks, they come in the order they opened. A task renamed by its root
        (``former_id``) is found by either id."""
        found = self._keys.get(task_id)
        if found is None:
            return [], []
        open_states: list[TaskState] = []
        closed_states: list[TaskState] = []
        for key in (found,) if isinstance(found, tuple) else tuple(found):
            st = tasks.get(key)
            if st is not None:
                if named(st, task_id):
                    open_states.append(st)
            else:
                st = closed.get(key, now)
                if st is not None and named(st, task_id):
                    closed_states.append(st)
        return open_states, closed_states


def named(st: TaskState, task_id: str) -> bool:
    """Whether ``task_id`` names the task: its id, or the one it was shown under before its root named it."""
    w = st.working
    return w.task_id == task_id or (w.former_id is not None and w.former_id == task_id)


__all__ = ["Key", "TaskIndex", "named"]
