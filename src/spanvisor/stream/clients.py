"""The connected SSE clients: slots per token, wake-ups, and cutting off.

Records enter the ring on the pipeline's loop (or a database listener's);
clients live on the HTTP server's loop. One wake-up per loop per append
(``call_soon_threadsafe``, coalesced) sets each waiting client's event, and
checks every client's queue on the way: a client whose write has not
returned while more than ``queue`` newer events arrived (it stopped reading)
is cut off, its
connection aborted and counted in ``spanvisor_dropped_total{reason=
"stream_slow_client", sink="stream"}``. Nothing here waits on a client, so
a stalled one slows neither the pipeline nor the others.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from spanvisor.stats import PipelineStats
from spanvisor.stream.ring import Record, Ring

WAKE_GAP_S = 0.025
WAKE_PAGE = 500


@dataclass(eq=False)
class Client:
    cursor: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    transport: Any = None
    # The last position of the write in flight (None: not writing): the
    # events after it are the client's queue.
    writing_to: int | None = None
    # Replaying from the feed, below the ring: its lag is not the ring's.
    catching_up: bool = False
    # Waiting for a wake-up (its cursor may then be moved past what it skips).
    waiting: bool = False
    # Which events it wants: an object with match(item) (sse.Filters), None: all.
    filters: Any = None
    cut: bool = False
    closing: bool = False


class LoopClients:
    """The clients served on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ring: Ring, owner: Clients) -> None:
        self.loop = loop
        self.ring = ring
        self.owner = owner
        self.clients: set[Client] = set()
        self._pending = False
        self._last = 0.0
        ring.listen(self.wake_threadsafe)

    def wake_threadsafe(self) -> None:
        if self._pending:
            return
        self._pending = True
        try:
            self.loop.call_soon_threadsafe(self._schedule)
        except RuntimeError:  # that loop is closed: its clients are gone
            self.ring.unlisten(self.wake_threadsafe)

    def _schedule(self) -> None:
        # At most one round of wake-ups per WAKE_GAP_S: under load each client
        # then writes several batches at once, one syscall instead of many.
        wait = self._last + WAKE_GAP_S - self.loop.time()
        if wait > 0:
            self.loop.call_later(wait, self._wake)
        else:
            self._wake()

    def _wake(self) -> None:
        self._pending = False
        self._last = self.loop.time()
        ring, bound = self.ring, self.owner.queue
        new: dict[int, list[Record] | None] = {}
        for c in list(self.clients):
            # Only a client whose write is stalled has a queue: one that is
            # about to read a burst from the ring is not behind.
            if c.writing_to is not None and not c.catching_up and ring.behind(c.writing_to) > bound:
                self.owner.cut_off(c)
            elif c.waiting and c.filters is not None:
                # A waiting client none of whose new events pass its filters
                # is moved past them here, not woken: a thousand filtered
                # clients cost one loop over the new events, not a thousand tasks.
                if c.cursor not in new:
                    new[c.cursor] = ring.after(c.cursor, WAKE_PAGE)
                records = new[c.cursor]
                if (
                    records is not None
                    and len(records) < WAKE_PAGE
                    and not any(c.filters.match(r.item) for r in records)
                ):
                    if records:
                        c.cursor = records[-1].pos
                    continue
            c.wake.set()


class Clients:
    """Every stream client of one process, for one ring."""

    def __init__(self, ring: Ring, stats: PipelineStats, max_per_token: int, queue: int) -> None:
        self.ring = ring
        self.stats = stats
        self.max_per_token = max_per_token
        self.queue = min(queue, ring.size)
        self._lock = threading.Lock()
        self._slots: dict[str, int] = {}
        self._loops: dict[asyncio.AbstractEventLoop, LoopClients] = {}
        stats.gauge("stream_clients", lambda: float(sum(self._slots.values())))

    def acquire(self, token: str) -> bool:
        with self._lock:
            n = self._slots.get(token, 0)
            if n >= self.max_per_token:
                return False
            self._slots[token] = n + 1
            return True

    def release(self, token: str) -> None:
        with self._lock:
            n = self._slots.get(token, 0) - 1
            if n > 0:
                self._slots[token] = n
            else:
                self._slots.pop(token, None)

    def count(self) -> int:
        """Streams open now (every token's)."""
        with self._lock:
            return sum(self._slots.values())

    def add(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            lc = self._loops.get(loop)
            if lc is None:
                lc = self._loops[loop] = LoopClients(loop, self.ring, self)
        lc.clients.add(client)

    def remove(self, client: Client) -> None:
        lc = self._loops.get(asyncio.get_running_loop())
        if lc is not None:
            lc.clients.discard(client)

    def cut_off(self, client: Client) -> None:
        if client.cut:
            return
        client.cut = True
        transport = client.transport
        if transport is not None:
            transport.abort()  # a write waiting on a client that never reads fails now
        self.stats.drop(
            "stream_slow_client",
            sink="stream",
            detail=f"an event stream client fell more than {self.queue} events behind and was cut off "
            "(it reconnects with Last-Event-ID; raise SPANVISOR_STREAM_CLIENT_QUEUE for slow readers)",
        )

    def close_all(self) -> None:
        """End every stream now (the server is stopping)."""
        for lc in list(self._loops.values()):
            for c in list(lc.clients):
                c.closing = True
                lc.loop.call_soon_threadsafe(c.wake.set)


__all__ = ["Client", "Clients", "LoopClients"]
