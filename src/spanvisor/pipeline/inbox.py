"""The inbox: where producers hand spans to the pipeline thread.

Producers (the agent's threads through the processor, the exporter behind a
BatchSpanProcessor, the receiver) only append to a bounded deque: no lock,
no I/O, no wake-up syscall. A full inbox drops the span and counts it
(``dropped_total{reason="inbox_full"}``, folded in on the pipeline thread).

Entries are ``("start", span)``, ``("end", span)``,
``("raw", classify, span)`` (a span a processor handed over as it is:
``classify`` turns it into a start or end entry, or nothing, on the
pipeline's thread), ``("spans", [SpanData, ...])`` (one receiver batch) or a
mark (:meth:`Inbox.put_mark`: the end of an exporter's batch). A
span is an SDK span or one of :mod:`spanvisor.pipeline.handover`'s forms.
The processor that owns the inbox's :attr:`Inbox.replay` appends its spans
bare, no tuple (an SDK ``Span`` or a ``StartedRoot`` at a start, the
``ReadableSpan`` the SDK hands ``on_end`` at an end): :meth:`Inbox.drain`
turns each into an entry with ``replay`` as it takes it. A tuple built per
hook, kept until the pipeline frees it, was a tenth of the hooks' cost on
the agent's thread (docs/design/performance.md). The
processor's hooks append to ``_items`` themselves while it holds fewer than
``limit`` entries (:meth:`Inbox.put`'s check, without the call), and count
the drop as it does (``stats.inbox_drop``) when it is full. The bound is about spans:
a receiver batch counts as its number of spans, under a short lock, so a
request is refused (503) rather than accepted and dropped later.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Sequence
from time import monotonic
from typing import Any

from spanvisor.spans.data import SpanData
from spanvisor.stats import PipelineStats

Entry = tuple[Any, ...]

# How many items a drain takes between two looks at its deadline: 64 bare
# items are a few tens of microseconds on the pipeline's thread, nothing
# against a pump's slice, and the clock is read once for all of them.
CHECK_EVERY = 64


class Inbox:
    def __init__(self, size: int, stats: PipelineStats) -> None:
        self.size = size
        self.stats = stats
        # Entries taken while open: ``size``, 0 once closed. The processor's
        # hooks read it to append straight to ``_items`` (their one bounded
        # append), falling back to put() to be counted when it is reached.
        self.limit = size
        self._items: deque[Any] = deque()
        # What turns a bare item (see the module's docstring) into an entry,
        # or None (nothing to track): set by the one processor that appends
        # bare items; any other processor on this inbox tags its own.
        self.replay: Callable[[Any], Entry | None] | None = None
        # Spans in the receiver's batches still here: one entry holds hundreds.
        self._spans = 0
        self._lock = threading.Lock()
        # The last drain's: whether it stopped on its deadline with items
        # left, and how many bare items it took that replayed to nothing.
        self.stopped = False
        self.skipped = 0

    @property
    def closed(self) -> bool:
        return self.limit == 0

    @closed.setter
    def closed(self, value: bool) -> None:
        self.limit = 0 if value else self.size

    def __len__(self) -> int:
        return len(self._items)

    def put(self, entry: Entry) -> bool:
        """A span start or end from any thread; False (and counted) when full or closed."""
        if len(self._items) >= self.limit:
            self.stats.inbox_drop()
            return False
        self._items.append(entry)
        return True

    def put_mark(self, mark: Entry) -> bool:
        """``mark`` after what a producer just put (the end of an exporter's
        delivered batch), from any thread. Past the bound: spans that were
        taken must not wait for their mark behind a full inbox. Never two in
        a row (one that is last already comes after whatever was put before
        it), so a full inbox holds at most one beyond its size: the spans put
        after a mark are dropped while it is full and it stays last. False
        only once closed (what was put after that was dropped too)."""
        items = self._items
        if self.limit == 0:
            return False
        try:
            if items[-1] is mark:
                return True
        except IndexError:  # empty (or emptied by the pipeline meanwhile)
            pass
        items.append(mark)
        return True

    def free(self) -> int:
        return max(0, self.size - len(self._items))

    @property
    def spans(self) -> int:
        """Spans of receiver batches waiting here."""
        return self._spans

    def has_room_for(self, n: int, limit: int | None = None) -> bool:
        """Room for a receiver batch of ``n`` spans, within ``limit`` spans
        (at most the size); an empty inbox takes any batch within the size."""
        if self.closed or len(self._items) >= self.size:
            return False
        bound = self.size if limit is None else min(self.size, limit)
        with self._lock:
            return self._spans + n <= bound or (self._spans == 0 and n <= self.size)

    def put_spans(self, spans: Sequence[SpanData]) -> None:
        """A receiver batch; the caller checked :meth:`has_room_for` first."""
        with self._lock:
            self._spans += len(spans)
        self._items.append(("spans", spans))

    def put_back(self, spans: Sequence[SpanData]) -> None:
        """The untracked rest of a receiver batch, back at the head (the
        pipeline's thread only; producers append at the other end)."""
        with self._lock:
            self._spans += len(spans)
        self._items.appendleft(("spans", spans))

    def drain(self, may_take_spans: Callable[[], bool], until: float | None = None) -> Generator[Entry, None, None]:
        """The entries present now, oldest first. A receiver batch is taken
        only while ``may_take_spans()`` says so; otherwise it and everything
        behind it stay for a later pump.

        With ``until`` (a ``time.monotonic()`` time) the drain stops once it
        is past, checked after every entry it gave (the caller's work on one
        costs microseconds, the clock tens of nanoseconds) and every
        ``CHECK_EVERY`` items taken (a bare item's own work costs about what
        the clock does), and sets :attr:`stopped`: bare items that replay to nothing
        (spans of no task) yield nothing the caller could time, and a run of
        them held a pump far past its slice. Once the drain ends or is closed,
        :attr:`skipped` is how many such items it took."""
        items = self._items
        replay = self.replay
        self.stopped = False
        skipped = 0
        mask = CHECK_EVERY - 1  # a local: the check is paid per item
        try:
            for i in range(1, len(items) + 1):
                if not i & mask and until is not None and monotonic() >= until:
                    self.stopped = True
                    return
                entry = items[0]
                if type(entry) is not tuple:
                    items.popleft()
                    got = replay(entry) if replay is not None else None
                    if got is None:
                        skipped += 1
                        continue
                    yield got
                    if until is not None and monotonic() >= until:
                        self.stopped = True  # what the caller did with it took the slice
                        return
                    continue
                if entry[0] == "spans":
                    if not may_take_spans():
                        return
                    with self._lock:
                        self._spans -= len(entry[1])
                items.popleft()
                yield entry
                if until is not None and monotonic() >= until:
                    self.stopped = True
                    return
        finally:
            self.skipped = skipped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._spans = 0
