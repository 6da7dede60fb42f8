"""The recent stream, in memory: what a reconnecting client replays.

Records arrive in stream order (positions only grow) from one writer at a
time, the pipeline's loop or a database listener, and are read by the SSE
clients of other threads' loops; a lock guards the deque. The ring keeps at
most ``size`` records and none older than ``age_s``; ``floor`` is the
position up to which records may be gone, so every record after ``floor``
is here and a client whose position is below it must replay from the feed
(a database) or start over (``event: reset``).

Each record carries its SSE frame, built once when it enters the ring, so a
thousand clients write the same bytes and encode nothing. The frame holds
the body, so the record's item keeps what the clients' filters read and not
the body again (about 1 KB an event: a full ring of 10,000 held each body
twice).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Item:
    """One event as the stream sends it, before it has a position."""

    event_id: str
    kind: str
    task_id: str
    agent_id: str | None
    status: str | None
    data: bytes  # the public body, encoded (spanvisor.stream.body)


@dataclass(frozen=True, slots=True)
class Record:
    """An item at its position in the stream; ``item.data`` is empty (the
    body is in ``frame``)."""

    pos: int
    item: Item
    frame: bytes
    at: float  # time.monotonic() when it entered the ring


def event_id_field(epoch: str, pos: int, event_id: str = "") -> str:
    """The SSE ``id:``: the stream's epoch, the position, the event's own id.
    ``Last-Event-ID`` echoes it back; only epoch and position are read."""
    return f"{epoch}:{pos}:{event_id}"


def frame(epoch: str, pos: int, item: Item) -> bytes:
    head = f"id: {event_id_field(epoch, pos, item.event_id)}\nevent: {item.kind}\ndata: "
    # UTF-8, as SSE is: a person's decision id may be any printable text
    # (control characters, which would end the line, are refused where it
    # comes in).
    return head.encode("utf-8") + item.data + b"\n\n"


class Ring:
    def __init__(self, epoch: str, size: int, age_s: float, floor: int = 0) -> None:
        self.epoch = epoch
        self.size = max(1, size)
        self.age_s = age_s
        self.floor = floor
        self._records: deque[Record] = deque()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.closed = False

    @property
    def head(self) -> int:
        """The newest position (``floor`` while empty)."""
        with self._lock:
            return self._records[-1].pos if self._records else self.floor

    def listen(self, wake: Callable[[], None]) -> None:
        """``wake()`` after every append (on the appending thread; cheap, no raise)."""
        with self._lock:
            self._listeners.append(wake)

    def unlisten(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if wake in self._listeners:
                self._listeners.remove(wake)

    def append(self, records: Sequence[tuple[int, Item]]) -> None:
        """Positioned items, in order; a position not past the head is a
        replay the ring already has and is skipped."""
        if not records:
            return
        now = time.monotonic()
        with self._lock:
            last = self._records[-1].pos if self._records else self.floor
            for pos, item in records:
                if pos <= last:
                    continue
                bare = Item(item.event_id, item.kind, item.task_id, item.agent_id, item.status, b"")
                self._records.append(Record(pos, bare, frame(self.epoch, pos, item), now))
                last = pos
            self._trim(now)
            listeners = list(self._listeners)
        for wake in listeners:
            wake()

    def _trim(self, now: float) -> None:
        records = self._records
        while records and (len(records) > self.size or now - records[0].at > self.age_s):
            self.floor = records.popleft().pos

    def after(self, pos: int, limit: int = 500) -> list[Record] | None:
        """Up to ``limit`` records after ``pos``; None when ``pos`` is below
        the floor (records after it may be gone)."""
        with self._lock:
            self._trim(time.monotonic())
            if pos < self.floor:
                return None
            records = self._records
            if not records or pos >= records[-1].pos:
                return []
            i = bisect.bisect_right(records, pos, key=_pos)
            return [records[j] for j in range(i, min(len(records), i + limit))]

    def behind(self, pos: int) -> int:
        """How many records follow ``pos`` (a client's lag)."""
        with self._lock:
            records = self._records
            if not records or pos >= records[-1].pos:
                return 0
            return len(records) - bisect.bisect_right(records, pos, key=_pos)

    def close(self) -> None:
        """No more records: every client's stream ends (they reconnect elsewhere)."""
        with self._lock:
            self.closed = True
            listeners = list(self._listeners)
        for wake in listeners:
            wake()


def _pos(r: Record) -> int:
    return r.pos


__all__ = ["Item", "Record", "Ring", "event_id_field", "frame"]
