"""TaskHold: the tasks a sink worker holds back while it cannot tell poison from an outage.

When a single event keeps raising in a sink (see :mod:`spanvisor.pipeline.sinkworker`)
and the sink has answered nothing since that event started failing, the
event may be bad or the sink may be down. The worker then holds the event's
*task*: the event and every later event of the same task wait here, in order,
while other tasks' events go on. That keeps each task's events in order
whatever the verdict, and blocks no other task.

Held tasks go back to the head of the sink's queue as soon as the sink
answers any export (then a suspect that raises again is set aside: the sink
works, the event does not), or after a backoff (0.5 s, doubling to 30 s)
when nothing answers (the sink may be back). Held events count in the
sink's queue depth and bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from spanvisor.events import Event

HOLD_BACKOFF_START_S = 0.5
HOLD_BACKOFF_MAX_S = 30.0


def _task_of(event: Event) -> str:
    """The key a task is held under: the id it first showed under, so that a
    task renamed by its root (``former_id``) waits behind its own suspect."""
    return event.task.former_id or event.task_id


class TaskHold:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.answers = 0  # exports the sink answered (SUCCESS or FAILURE), ever
        self._tasks: dict[str, list[Event]] = {}  # task (_task_of) -> its suspect, then the events behind it
        self._suspected: dict[str, int] = {}  # event id -> answers when it first became a suspect
        self._answers_at_hold = 0
        self._release_at = 0.0
        self._backoff = HOLD_BACKOFF_START_S

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def __len__(self) -> int:
        """Events held."""
        return sum(map(len, self._tasks.values()))

    def proven_bad(self, event: Event, since: int) -> bool:
        """True when the sink answered some export since ``event`` started
        failing (``since``: the answer count then, or at its first suspicion)."""
        since = min(since, self._suspected.get(event.event_id, since))
        if self.answers > since:
            self._suspected.pop(event.event_id, None)
            return True
        self._suspected[event.event_id] = since
        return False

    def hold(self, event: Event) -> None:
        """Hold ``event``'s task, with ``event`` first."""
        if not self._tasks:
            self._answers_at_hold = self.answers
            self._release_at = self._clock() + self._backoff
        self._tasks.setdefault(_task_of(event), []).append(event)

    def divert(self, events: list[Event]) -> list[Event]:
        """Move the events of held tasks here, in order; return the others."""
        if not self._tasks:
            return events
        rest: list[Event] = []
        for event in events:
            waiting = self._tasks.get(_task_of(event))
            if waiting is None:
                rest.append(event)
            else:
                waiting.append(event)
        return rest

    def due(self) -> bool:
        return bool(self._tasks) and (self.answers > self._answers_at_hold or self._clock() >= self._release_at)

    def seconds_to_release(self) -> float:
        return max(0.0, self._release_at - self._clock())

    def release(self) -> list[Event]:
        """Every held event, each task in its order; the hold is empty after."""
        if self.answers > self._answers_at_hold:
            self._backoff = HOLD_BACKOFF_START_S
        else:
            self._backoff = min(HOLD_BACKOFF_MAX_S, self._backoff * 2)
        held = [event for events in self._tasks.values() for event in events]
        self._tasks.clear()
        return held

    def clear(self) -> int:
        """Forget every held event (shutdown); how many there were."""
        n = len(self)
        self._tasks.clear()
        self._suspected.clear()
        return n
