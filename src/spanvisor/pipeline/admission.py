"""What the receiver may hand the pipeline, and how soon there will be room.

Two things bound it: the inbox (receiver spans waiting for the tracker) and
every durable sink's queue (a sink that must not drop: PostgreSQL), with a
paced sink's (the event stream's) while it delivers. The
receiver asks before it reads a request (:meth:`Admission.room_in`) and
waits for room it is told is coming soon, or answers 503 with how soon.

The inbox holds at most what the tracker works off in :data:`BACKLOG_S` at
its recent rate (never fewer than :data:`BACKLOG_MIN_SPANS`, never more than
its size): an overloaded process holds seconds of work rather than minutes
of it, which keeps receipt-to-sink latency and memory bounded; every
accepted span is journaled, the rest wait at the client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spanvisor.pipeline.inbox import Inbox
from spanvisor.pipeline.rate import Rate
from spanvisor.pipeline.sinkworker import SinkWorker

BACKLOG_S = 2.0
BACKLOG_MIN_SPANS = 10_000
UNKNOWN_S = 0.05


class Admission:
    def __init__(self, inbox: Inbox, tracked: Rate, workers: Callable[[], Sequence[SinkWorker]]) -> None:
        self._inbox = inbox
        self._tracked = tracked  # spans the tracker takes per second, lately
        self._workers = workers

    def backlog_limit(self) -> int:
        """How many receiver spans may wait in the inbox now (the floor
        until the tracker's rate is known: a start must not soak up minutes
        of work before anyone knows how fast it goes)."""
        rate = self._tracked.per_s()
        if rate is None:
            return BACKLOG_MIN_SPANS
        return int(max(BACKLOG_MIN_SPANS, rate * BACKLOG_S))

    def sinks_room(self, extra: int) -> bool:
        """Whether every sink the receiver waits for has room for ``extra`` more events."""
        return all(w.has_room(extra) for w in self._workers() if w.holds_intake())

    def accepting(self, n: int) -> bool:
        return self._inbox.has_room_for(n, self.backlog_limit()) and self.sinks_room(0)

    def room_in(self, n: int) -> float | None:
        """0.0 when ``n`` more spans fit now (:meth:`accepting`); otherwise
        about how many seconds until they will, from the tracker's and each
        durable sink's recent rates (before the tracker has a rate: soon, look
        again); None when that cannot be told (a durable sink delivered
        nothing lately: it may be down, and waiting would not help)."""
        wait = 0.0
        inbox = self._inbox
        limit = self.backlog_limit()
        if not inbox.has_room_for(n, limit):
            need = inbox.spans + n - min(limit, inbox.size)
            tracked = self._tracked.seconds_for(need) if need > 0 else 0.0
            # No rate yet (the tracker has just started): look again shortly.
            wait = max(wait, UNKNOWN_S if tracked is None else tracked, 1e-3)
        for w in self._workers():
            if w.holds_intake():
                drained = w.seconds_to_room()
                if drained is None:
                    if w.durable:
                        return None
                    continue  # a paced sink that stopped delivering since: not waited for
                wait = max(wait, drained)
        return wait
