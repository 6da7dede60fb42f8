"""Tasks at the edges of one tracker's view, for late work and replicas.

Work can outlive its task's root, and under ``spanvisor serve`` with
several replicas a task's spans may be spread over them (spraying, a
restart, a load-balancing ring that changed). Two kinds of task then need
care; see ``docs/reference/deploy.md#replicas``.

* :class:`ClosedTasks`: the state of tasks that finished here, kept for
  :data:`LATE_WINDOW_S` (at most :data:`MAX_CLOSED` of them), on every path.
  A span of such a task arriving now (async work that outlived it, a
  Collector retry, another replica's batch) is read into that state under
  the late-span rule (:mod:`.late`): one ``TaskCorrected`` carrying its facts
  when it ended before the root, correcting the totals either way. The task
  is never reopened: no second ``TaskStarted`` or ``TaskFinished``. Later
  than the window, such a span is dropped and counted
  (``dropped_total{reason="late_span"}``).
* :class:`PartialTasks`: open tasks this tracker opened from a descendant
  (a stamped child arrived first) and whose root it has not absorbed. One
  left untouched for the idle time (``root_hold_s``) is no longer open here
  (``evicted_tasks_total{reason="partial"}``; it gets no ``TaskFinished``:
  its events are already with the sinks, and the replica that receives the
  root finishes it). Its state sleeps in a bounded map for
  :data:`DORMANT_TTL_S`, so a span that comes later continues it (same
  ``seq``, same totals) instead of starting it over; after that it is
  forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from spanvisor.tracking.taskstate import TaskState

Key = tuple[str, str]  # (trace id, root span id)

LATE_WINDOW_S = 600.0
MAX_CLOSED = 2_000
DORMANT_TTL_S = 3600.0


@dataclass(slots=True)
class _Kept:
    state: TaskState
    since: float


class ClosedTasks:
    """Finished tasks' states, oldest first, bounded by count and age."""

    def __init__(self, keep: int = MAX_CLOSED, window_s: float = LATE_WINDOW_S) -> None:
        self._keep = max(0, keep)
        self._window_s = window_s
        self._kept: OrderedDict[Key, _Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, key: Key, state: TaskState, now: float) -> None:
        self._kept[key] = _Kept(state, now)
        while len(self._kept) > self._keep:
            self._kept.popitem(last=False)

    def get(self, key: Key, now: float) -> TaskState | None:
        kept = self._kept.get(key)
        if kept is None or now - kept.since > self._window_s:
            return None
        return kept.state

    def age(self, key: Key, now: float) -> float | None:
        """Seconds since the task finished here (how late a span of it arrives)."""
        kept = self._kept.get(key)
        return None if kept is None else max(0.0, now - kept.since)

    def states(self) -> list[TaskState]:
        return [k.state for k in self._kept.values()]

    def expire(self, now: float) -> None:
        while self._kept:
            key, kept = next(iter(self._kept.items()))
            if now - kept.since <= self._window_s:
                return
            del self._kept[key]


class PartialTasks:
    """Open tasks whose root this tracker has not seen, and sleeping ones."""

    def __init__(self, idle_s: float, max_dormant: int, ttl_s: float = DORMANT_TTL_S) -> None:
        self.idle_s = idle_s
        self._max_dormant = max(1, max_dormant)
        self._ttl_s = ttl_s
        self._touched: OrderedDict[Key, float] = OrderedDict()  # open ones, least recently touched first
        self._dormant: OrderedDict[Key, _Kept] = OrderedDict()

    @property
    def open(self) -> int:
        return len(self._touched)

    @property
    def dormant(self) -> int:
        return len(self._dormant)

    def __contains__(self, key: object) -> bool:
        return key in self._touched

    def opened(self, key: Key, now: float) -> None:
        self._touched[key] = now

    def touch(self, key: Key, now: float) -> None:
        if key in self._touched:
            self._touched[key] = now
            self._touched.move_to_end(key)

    def root_seen(self, key: Key) -> None:
        self._touched.pop(key, None)

    def due(self, now: float) -> list[Key]:
        """Open partial tasks idle for ``idle_s``: no longer partial-open."""
        out: list[Key] = []
        while self._touched:
            key, at = next(iter(self._touched.items()))
            if now - at < self.idle_s:
                break
            del self._touched[key]
            out.append(key)
        return out

    def sleep(self, key: Key, state: TaskState, now: float) -> None:
        self._touched.pop(key, None)
        self._dormant[key] = _Kept(state, now)
        self._dormant.move_to_end(key)
        while len(self._dormant) > self._max_dormant:
            self._dormant.popitem(last=False)

    def wake(self, key: Key) -> TaskState | None:
        kept = self._dormant.pop(key, None)
        return None if kept is None else kept.state

    def is_dormant(self, key: Key) -> bool:
        return key in self._dormant

    def expire(self, now: float) -> int:
        """Forget sleeping tasks older than the TTL; how many went."""
        n = 0
        while self._dormant:
            key, kept = next(iter(self._dormant.items()))
            if now - kept.since <= self._ttl_s:
                break
            del self._dormant[key]
            n += 1
        return n
