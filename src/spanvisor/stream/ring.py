"""The recent stream, in memory: what a reconnecting client replays.

Records arrive in stream order (positions only grow) from one writer at a
time, the pipeline's loop or a database listener, and are read by the SSE
clients of other threads' loops; a lock guards them. The ring keeps at
most ``size`` records and none older than ``age_s``; ``floor`` is the
position up to which records may be gone, so every record after ``floor``
is here and a client whose position is below it must replay from the feed
(a database) or start over (``event: reset``).

Each record carries its SSE frame, built once when it enters the ring, so a
thousand clients write the same bytes and encode nothing. The newest
``hot`` records stay as they are (what connected clients read); older ones
are kept compressed, ``block`` records together with their filters' fields
(zlib at level 1: about 12 times smaller on the mix's events, about 2 µs an
event, the GIL let go while it runs). A full ring of 10,000 events is then
about 1 MB instead of about 10: a client that reconnects or falls behind
reads a block back (the last few are kept decompressed, so clients that
replay the same stretch decompress it once).
"""

from __future__ import annotations

import bisect
import marshal
import threading
import time
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

# The newest records kept as they are, and how many older ones are
# compressed together (larger blocks compress little better: 13.6 against
# 12.4 times for 256 and 64 events, and cost more to read back one record).
HOT = 256
BLOCK = 64
# Blocks kept decompressed for readers.
_CACHED = 4


class Item(NamedTuple):
    """One event as the stream sends it, before it has a position. A named
    tuple (immutable, built without a setattr per field): one is made for
    every event the stream publishes."""

    event_id: str
    kind: str
    task_id: str
    agent_id: str | None
    status: str | None
    data: bytes  # the public body, encoded (spanvisor.stream.body)
    # The id the task showed under before its root named its own: ?task= matches either.
    former_id: str | None = None


class Record(NamedTuple):
    """An item at its position in the stream. Readers take the body from
    ``frame``; ``item`` is for the filters (its ``data`` is the body while the
    record is hot and empty once it was compressed). A named tuple, not a
    frozen dataclass: one is made for every event of every replica."""

    pos: int
    item: Item
    frame: bytes
    at: float  # time.monotonic() when it entered the ring


class _Block:
    """Records compressed together: their positions and times as they are
    (trimming and finding a position read no body), the rest in ``blob``.
    Records before ``start`` are gone (trimmed one at a time, by age or count)."""

    __slots__ = ("at", "blob", "pos", "start")

    def __init__(self, records: Sequence[Record]) -> None:
        self.pos = array("q", [r.pos for r in records])
        self.at = array("d", [r.at for r in records])
        rows = [
            (r.item.event_id, r.item.kind, r.item.task_id, r.item.agent_id, r.item.status, r.frame, r.item.former_id)
            for r in records
        ]
        # marshal: our own strings, bytes and None, read back only here.
        self.blob = zlib.compress(marshal.dumps(rows), 1)
        self.start = 0

    def __len__(self) -> int:
        return len(self.pos) - self.start

    def records(self) -> list[Record]:
        rows = marshal.loads(zlib.decompress(self.blob))
        return [
            Record(p, Item(eid, kind, tid, aid, st, b"", former), fr, at)
            for p, at, (eid, kind, tid, aid, st, fr, former) in zip(self.pos, self.at, rows, strict=True)
        ]


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
    def __init__(
        self,
        epoch: str,
        size: int,
        age_s: float,
        floor: int = 0,
        hot: int = HOT,
        block: int = BLOCK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.epoch = epoch
        self.size = max(1, size)
        self.age_s = age_s
        self.floor = floor
        self._hot_size = max(1, hot)
        self._block = max(1, block)
        self._records: deque[Record] = deque()  # the newest, as they are
        self._blocks: deque[_Block] = deque()  # older, compressed, oldest first
        self._in_blocks = 0
        self._cache: list[tuple[_Block, list[Record]]] = []
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._clock = clock
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
        now = self._clock()
        epoch = self.epoch
        with self._lock:
            hot = self._records
            last = hot[-1].pos if hot else self.floor
            add = hot.append
            for pos, item in records:
                if pos <= last:
                    continue
                # The item as it came (no bare copy: a block drops its body
                # when it compresses), and frame()'s bytes written inline.
                head = f"id: {epoch}:{pos}:{item.event_id}\nevent: {item.kind}\ndata: "
                add(Record(pos, item, b"".join((head.encode("utf-8"), item.data, b"\n\n")), now))
                last = pos
            self._trim(now)
            # Only a ring that keeps more than its hot records compresses.
            while len(hot) >= self._hot_size + self._block:
                self._blocks.append(_Block([hot.popleft() for _ in range(self._block)]))
                self._in_blocks += self._block
            listeners = list(self._listeners)
        for wake in listeners:
            wake()

    def skip_to(self, pos: int) -> None:
        """Events up to ``pos`` were not recorded (nobody read the stream):
        the ring drops what it holds and starts after ``pos``, so a client
        whose position is below it replays from the feed or gets a reset,
        never a silent gap."""
        with self._lock:
            if pos <= (self._records[-1].pos if self._records else self.floor):
                return
            self._records.clear()
            self._blocks.clear()
            self._in_blocks = 0
            self._cache = []
            self.floor = pos
            listeners = list(self._listeners)
        for wake in listeners:
            wake()

    def _trim(self, now: float) -> None:
        blocks, hot = self._blocks, self._records
        while blocks:
            b = blocks[0]
            if self._in_blocks + len(hot) <= self.size and now - b.at[b.start] <= self.age_s:
                return
            self.floor = b.pos[b.start]
            b.start += 1
            self._in_blocks -= 1
            if not len(b):
                blocks.popleft()
                self._cache = [c for c in self._cache if c[0] is not b]
        while hot and (len(hot) > self.size or now - hot[0].at > self.age_s):
            self.floor = hot.popleft().pos

    def _unpacked(self, b: _Block) -> list[Record]:
        for got in self._cache:
            if got[0] is b:
                return got[1]
        records = b.records()
        self._cache = [(b, records), *self._cache[: _CACHED - 1]]
        return records

    def _first_block_after(self, pos: int) -> int:
        """The index of the first block holding a record after ``pos``
        (``len(blocks)`` when every record after it is in the hot ones)."""
        blocks = self._blocks
        lo, hi = 0, len(blocks)
        while lo < hi:
            mid = (lo + hi) // 2
            if blocks[mid].pos[-1] <= pos:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def after(self, pos: int, limit: int = 500) -> list[Record] | None:
        """Up to ``limit`` records after ``pos``; None when ``pos`` is below
        the floor (records after it may be gone)."""
        with self._lock:
            self._trim(self._clock())
            if pos < self.floor:
                return None
            hot = self._records
            if not hot or pos >= hot[-1].pos:
                return []
            out: list[Record] = []
            blocks = self._blocks
            for k in range(self._first_block_after(pos), len(blocks)):
                b = blocks[k]
                i = bisect.bisect_right(b.pos, pos, lo=b.start)
                out.extend(self._unpacked(b)[i : i + limit - len(out)])
                if len(out) >= limit:
                    return out
            i = bisect.bisect_right(hot, pos, key=_pos)
            out.extend(hot[j] for j in range(i, min(len(hot), i + limit - len(out))))
            return out

    def behind(self, pos: int) -> int:
        """How many records follow ``pos`` (a client's lag)."""
        with self._lock:
            hot = self._records
            if not hot or pos >= hot[-1].pos:
                return 0
            blocks = self._blocks
            k = self._first_block_after(pos)
            n = len(hot) - bisect.bisect_right(hot, pos, key=_pos)
            if k < len(blocks):
                b = blocks[k]
                n += len(b.pos) - bisect.bisect_right(b.pos, pos, lo=b.start)
                n += sum(len(blocks[j]) for j in range(k + 1, len(blocks)))
            return n

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
