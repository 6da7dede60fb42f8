"""Test helpers for users' own tests: ``InMemorySink`` records events."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypeVar

from spanvisor.events import Event, TaskEvent
from spanvisor.sink import BaseSink, SinkResult

E = TypeVar("E", bound=TaskEvent)


class InMemorySink(BaseSink):
    """Keeps every event it receives, in order, in ``.events``.

    ``InMemorySink()`` with ``SpanvisorSpanProcessor(sinks=[sink])``, then
    ``provider.force_flush()`` before asserting.
    """

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._lock = threading.Lock()

    async def export(self, events: Sequence[Event]) -> SinkResult:
        with self._lock:
            self.events.extend(events)
        return SinkResult.SUCCESS

    def of_type(self, kind: type[E]) -> list[E]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def for_task(self, task_id: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.task_id == task_id]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
