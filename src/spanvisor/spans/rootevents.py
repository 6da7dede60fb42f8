"""An open root's events, read a little at a time.

The tracker reads an open root's events up to a child's end before it reads
that child (so a checkpoint the agent added first is ordered first), and
``TaskState.absorb`` knows an event by ``(time, name, rank among those of
that time and name)``. Handing it every event of the root each time costs
as much as the root has events, for every child: a task of 10,000 children
and checkpoints paid 2 ms a span. :class:`EventCursor` keeps the root's
events as last read and how many of them a read has taken, so that a read
up to a time hands over only the events not taken yet, up to that time.

That is what a whole read would emit, in the same order and with the same
ranks, when the events not taken yet are in time order and all later than
every event taken (then no event not taken shares a time, so a rank, with
one taken, and every taken event is in the seen set already). Otherwise
(an agent that gives its events times out of order, or two events of one
nanosecond on both sides of a read) the read hands over every event, as
before, and the cursor learns what it took.

The SDK keeps only a span's newest events (128 by default): its
``BoundedList`` drops the oldest when full and counts them in ``dropped``,
so ``dropped + len`` is how many were ever added, and the events added since
the last read are the last ones of its deque.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Container
from dataclasses import replace
from itertools import islice, pairwise
from typing import Any

from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList

from spanvisor.spans.data import MAX_AHEAD_NS, SpanData, SpanEventData


class EventCursor:
    """One root's events as last read: how many were taken, and those not yet."""

    __slots__ = ("done", "first", "ordered", "taken_max", "todo", "usable")

    def __init__(self) -> None:
        # The span's events as last read, oldest first: how many were handed
        # over up to a time they are within (done), and those not yet (todo).
        # Taken events are not kept: a whole read reads the span again.
        self.done = 0
        self.todo: deque[SpanEventData] = deque()
        self.first = 0  # how many events the span lost from the front before these
        self.taken_max = -1  # the latest time of an event ever taken
        self.ordered = True  # todo in time order
        # False once a read could not be followed (an event whose time had
        # to be clamped is read again each time, as a whole read does).
        self.usable = True

    def add(self, new: list[SpanEventData], first: int) -> None:
        """The span's events now begin at index ``first`` of all it was ever
        given (the older ones fell off: a whole read would not see them
        either), and ``new`` came after those read before."""
        lost = first - self.first
        if lost > 0:
            gone = min(lost, self.done)
            self.done -= gone
            todo = self.todo
            for _ in range(min(lost - gone, len(todo))):
                todo.popleft()
            self.first = first
        todo = self.todo
        for e in new:
            if todo and e.time_ns < todo[-1].time_ns:
                self.ordered = False
            todo.append(e)
        if not todo:
            self.ordered = True

    def until(self, limit: int) -> tuple[SpanEventData, ...] | None:
        """What a read of the root's events up to ``limit`` must hand over,
        or None when only a whole read is sure to give what a whole read
        gives; afterwards every event at or before ``limit`` counts as taken."""
        todo = self.todo
        if not todo:
            return ()
        if self.ordered and todo[0].time_ns > self.taken_max:
            out: list[SpanEventData] = []
            take = todo.popleft
            while todo and todo[0].time_ns <= limit:
                out.append(take())
            if out:
                self.done += len(out)
                self.taken_max = out[-1].time_ns
            return tuple(out)
        within = [e.time_ns for e in todo if e.time_ns <= limit]
        if within:
            self.taken_max = max(self.taken_max, *within)
        while todo and todo[0].time_ns <= limit:
            todo.popleft()
            self.done += 1
        self.ordered = all(a.time_ns <= b.time_ns for a, b in pairwise(todo))
        return None

    def unread(self, last_ns: int) -> tuple[SpanEventData, ...] | None:
        """The events a whole read of the root (a poll) needs, or None when
        only every event will do: those not taken yet, when they are in
        time order, later than every taken one, and no taken event is later
        than ``last_ns`` (the task's latest event: a poll asks whether the
        root holds anything later, and a taken event that caused no event of
        its own, an exception say, may be)."""
        todo = self.todo
        if self.ordered and self.taken_max <= last_ns and (not todo or todo[0].time_ns > self.taken_max):
            return tuple(todo)
        return None


def _sdk_events(live: Any) -> BoundedList[Any] | None:
    span = live if isinstance(live, ReadableSpan) else getattr(live, "span", None)
    if not isinstance(span, ReadableSpan):
        return None
    evs = getattr(span, "_events", None)
    return evs if type(evs) is BoundedList else None


def read_sdk_events(live: Any, cursor: EventCursor) -> bool:
    """Give ``cursor`` the events an open SDK span (or what wraps one as
    ``.span``) gained since its last read. False: not an SDK span as the
    cursor can follow (the caller reads the span whole instead)."""
    evs = _sdk_events(live)
    if evs is None:
        return False
    dq = getattr(evs, "_dq", None)
    lock = getattr(evs, "_lock", None)
    if type(dq) is not deque or lock is None:
        return False
    with lock:  # held by the agent's thread only around one append
        dropped = evs.dropped
        total = dropped + len(dq)
        fresh = total - (cursor.first + cursor.done + len(cursor.todo))
        raw = list(islice(reversed(dq), min(fresh, len(dq)))) if fresh > 0 else []
    raw.reverse()
    now = time.time_ns()
    new: list[SpanEventData] = []
    for ev in raw:
        attrs = ev._attributes if type(ev) is SdkEvent else None
        d = getattr(attrs, "_dict", None) if attrs is not None else {}
        t = ev._timestamp or 0 if type(ev) is SdkEvent else -1
        if type(d) is not dict or not 0 <= t <= now + MAX_AHEAD_NS:
            return False  # not the SDK's usual shape, or a clamped time
        new.append(SpanEventData(ev._name, t, dict(d)))
    cursor.add(new, dropped)
    return True


Key = tuple[str, str]  # (trace id, root span id)


def _events_only(key: Key, events: tuple[SpanEventData, ...]) -> SpanData:
    """The root as a read of its events up to a time needs it: such a read
    takes none of its attributes."""
    return SpanData(key[0], key[1], None, "", 0, None, {}, events)


class OpenRoots:
    """Each open root's cursor, by task. ``read`` gives a cursor the root's
    new events, or says False when it cannot follow the live object (then
    the root is read whole, as before)."""

    __slots__ = ("_cursors", "read")

    def __init__(self, read: Callable[[Any, EventCursor], bool] = read_sdk_events) -> None:
        self.read = read
        self._cursors: dict[Key, EventCursor] = {}

    def cursor(self, key: Key, live: Any) -> EventCursor | None:
        """``key``'s cursor, given the root's new events; None: read it whole."""
        cur = self._cursors.get(key)
        if cur is None:
            cur = self._cursors[key] = EventCursor()
        if cur.usable and self.read(live, cur):
            return cur
        cur.usable = False
        return None

    def until(self, key: Key, live: Any, until_ns: int) -> SpanData | None:
        """The root's events a read up to ``until_ns`` needs; None: read it
        whole (after its new events, so that the cursor has seen no event the
        whole read has not)."""
        cur = self.cursor(key, live)
        evs = None if cur is None else cur.until(until_ns)
        return None if evs is None else _events_only(key, evs)

    @staticmethod
    def polled(cur: EventCursor, snap: SpanData, last_ns: int, now_ns: int) -> SpanData:
        """``snap`` (the whole root, read after ``cur`` was given its new
        events) as a poll at ``now_ns`` needs it; what the poll takes is
        taken as far as the cursor knows."""
        unread = cur.unread(last_ns)
        cur.until(now_ns)
        return snap if unread is None else replace(snap, events=unread)

    def keep_only(self, keys: Container[Key]) -> None:
        """Forget the cursors of roots no longer open."""
        for key in [k for k in self._cursors if k not in keys]:
            del self._cursors[key]

    def forget(self, key: Key) -> None:
        self._cursors.pop(key, None)


class EndedRoot:
    """An ended root whose buffered children are read in turn, its events
    up to each child's end first (the end-order path): each read hands over
    only the events not taken yet."""

    __slots__ = ("_cursor", "_key", "_root")

    def __init__(self, root: SpanData) -> None:
        self._root = root
        self._key = (root.trace_id, root.span_id)
        self._cursor = EventCursor()
        self._cursor.add(list(root.events), 0)

    def until(self, until_ns: int) -> SpanData:
        evs = self._cursor.until(until_ns)
        return self._root if evs is None else _events_only(self._key, evs)


__all__ = ["EndedRoot", "EventCursor", "OpenRoots", "read_sdk_events"]
