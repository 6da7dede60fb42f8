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
from itertools import islice
from typing import Any

from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList

from spanvisor.spans.data import MAX_AHEAD_NS, SpanEventData


class EventCursor:
    """One root's events as last read, and how many of them are taken."""

    __slots__ = ("events", "first", "taken", "taken_max", "ordered", "usable")

    def __init__(self) -> None:
        self.events: deque[SpanEventData] = deque()
        self.first = 0  # how many events the span lost from the front before events[0]
        self.taken = 0  # events[:taken] were handed over up to a time they are within
        self.taken_max = -1  # the latest time of an event ever taken
        self.ordered = True  # events[taken:] in time order
        # False once a read could not be followed (an event whose time had
        # to be clamped is read again each time, as a whole read does).
        self.usable = True

    def add(self, new: list[SpanEventData], first: int) -> None:
        """The span's events now begin at index ``first`` of all it was ever
        given (the older ones fell off), and ``new`` came after those read
        before."""
        ev = self.events
        while self.first < first and ev:
            ev.popleft()  # fell off: a whole read would not see it either
            self.first += 1
            if self.taken:
                self.taken -= 1
        if not ev:
            self.first = first
        for e in new:
            if len(ev) > self.taken and e.time_ns < ev[-1].time_ns:
                self.ordered = False
            ev.append(e)
        if len(ev) == self.taken:
            self.ordered = True

    def until(self, limit: int) -> tuple[SpanEventData, ...]:
        """What a read of the root's events up to ``limit`` must hand over;
        afterwards every event at or before ``limit`` counts as taken."""
        ev, k = self.events, self.taken
        if k == len(ev):
            return ()
        if self.ordered and ev[k].time_ns > self.taken_max:
            out: list[SpanEventData] = []
            for e in islice(ev, k, None):
                if e.time_ns > limit:
                    break
                out.append(e)
            if out:
                self.taken = k + len(out)
                self.taken_max = max(self.taken_max, out[-1].time_ns)
            return tuple(out)
        return self._whole(limit)

    def _whole(self, limit: int) -> tuple[SpanEventData, ...]:
        ev = self.events
        everything = tuple(ev)
        times = [e.time_ns for e in everything]
        within = [t for t in times if t <= limit]
        if within:
            self.taken_max = max(self.taken_max, *within)
        k = self.taken
        while k < len(times) and times[k] <= limit:
            k += 1
        self.taken = k
        rest = times[k:]
        self.ordered = all(a <= b for a, b in zip(rest, rest[1:], strict=False))
        return everything


def _sdk_events(live: Any) -> BoundedList | None:
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
        fresh = total - (cursor.first + len(cursor.events))
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


__all__ = ["EventCursor", "read_sdk_events"]
