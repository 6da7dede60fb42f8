"""Slack's per-method rate limits, kept before sending instead of learnt from 429s.

Slack limits most Web API methods per workspace (per token) and method, in
tiers: Tier 2 about 20 calls a minute, Tier 3 about 50 (``chat.update``,
``chat.delete``, ``conversations.history``), Tier 4 about 100, each with
short bursts. A sink that sends as soon as it can and backs off only after a
429 spends most of its calls on 429s: a hundred tasks each waiting to edit
their messages all go at once when a pause ends, one gets through, the rest
are refused and wait again. Here each limited method has a token bucket at
its tier's rate (a small burst, below Slack's own, so a little network
jitter never overdraws it) and a queue of the calls waiting for it: the
best rank first (a question for a person or a failure, then any other
status change, then a work log, then a routine parent edit), then the one
that has waited longest; a channel's board (issue 67) ahead of all, with a
call of the bucket kept for it once one exists (:meth:`MethodPacer.reserve`).
Progress (a work log, a routine edit) never takes a bucket's last call:
that one is kept for a status change, so a question asked after a quiet
stretch goes at once even when work logs have used the rest. After a 429 anyway (another
process on the same token) the method pauses for ``Retry-After`` and its
bucket starts empty after the pause: the waiting calls go one by one at the
tier's rate, never all together.

A waiting call keeps its place when it steps out (its caller has a thread
reply to post first, see :class:`Interrupt`) and comes back for the same
message (``key``): the edit it then sends is built from the latest state,
so many changes of one message while it waited are one call.

``chat.postMessage`` is not here: Slack limits it per channel (about one a
second), which :mod:`.turns` keeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from spanvisor.sink import Clock

# Ranks of edits in a method's queue: lower goes first.
BOARD = -2  # a channel's board (.board): one call shows every task of a busy channel; paced by its own gap
PERSON = -1  # a new question for a person, or a failure: someone must act on it now (issue 67: p95 <= 2 s)
URGENT = 0  # a status change, a person's decision, the final state
LOG = 1  # a work log showing tool calls
ROUTINE = 2  # a parent's periodic refresh
TIER_PER_MINUTE = {1: 1.0, 2: 20.0, 3: 50.0, 4: 100.0}
# Slack's documented tier of each method the sink calls (chat.postMessage is
# per channel, .turns; the interactivity client has its own, .webapi).
METHOD_TIERS = {
    "chat.update": 3,
    "chat.delete": 3,
    "conversations.history": 3,
    "conversations.list": 2,
    "chat.getPermalink": 4,
    "agents.sessions.setStatus": 3,
    # UNCONFIRMED: the page gives no tier; setStatus's, its sibling's.
    "agents.sessions.rename": 3,
    # Code channels (.codechannels): their tiers are UNCONFIRMED (the pages'
    # rate-limit line was not readable). Making and archiving a channel are
    # paced as Slack's generic conversations.create and conversations.archive
    # (Tier 2), the context bar as setStatus (Tier 3).
    "agents.conversations.create": 2,
    "agents.conversations.archive": 2,
    "agents.conversations.setProperties": 3,
    "agents.conversations.setView": 3,  # UNCONFIRMED as setProperties
}
KEEP_PLACES = 10_000
EPSILON_S = 1e-6
Took = Literal["go", "deadline", "deferred"]


@dataclass(frozen=True, slots=True)
class Limit:
    per_minute: float
    burst: int

    @classmethod
    def tier(cls, n: int) -> Limit:
        per_minute = TIER_PER_MINUTE[n]
        # A burst a little below what Slack tolerates: one call of slack for jitter.
        return cls(per_minute, max(1, int(per_minute) // 12))


def default_limits() -> dict[str, Limit]:
    return {m: Limit.tier(t) for m, t in METHOD_TIERS.items()}


def limits_with(overrides: tuple[tuple[str, float, int], ...]) -> dict[str, Limit]:
    out = default_limits()
    for method, per_minute, burst in overrides:
        if per_minute <= 0:
            out.pop(method, None)
        else:
            out[method] = Limit(per_minute, burst)
    return out


@dataclass
class Interrupt:
    """Lets a caller step out of a long wait: ``event`` says something changed,
    ``due()`` is the clock time from which it has something better to do
    (``inf``: nothing)."""

    event: asyncio.Event
    due: Callable[[], float]


@dataclass(order=True)
class _Turn:
    rank: int
    seq: int
    key: str = field(compare=False)
    wake: asyncio.Event = field(compare=False, default_factory=asyncio.Event)


class MethodPacer:
    """A token bucket and a queue of waiting calls per limited method."""

    def __init__(self, clock: Clock, limits: Mapping[str, Limit]) -> None:
        self.clock = clock
        self.limits = dict(limits)
        self.buckets: dict[str, tuple[float, float]] = {}
        self._queues: dict[str, list[_Turn]] = {}
        self._seq = itertools.count()
        # A message's place in its method's queue while its edit stepped out.
        self._places: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._granted: OrderedDict[tuple[str, str], int] = OrderedDict()  # the last turn of each message
        # Calls of a method's bucket kept for BOARD-rank calls (.board): a
        # board due now never waits for the bucket to refill behind others.
        self.reserved: dict[str, int] = {}

    def limited(self, method: str) -> bool:
        return method in self.limits

    def _level(self, method: str, now: float) -> float:
        limit = self.limits[method]
        level, last = self.buckets.get(method, (float(limit.burst), now))
        level = min(float(limit.burst), level + max(0.0, now - last) * limit.per_minute / 60.0)
        self.buckets[method] = (level, max(now, last))
        return level

    def drained(self, method: str, until: float) -> None:
        """A 429: when the pause ends the bucket holds one call, so the waiting
        calls resume one by one at the tier's rate, never all together."""
        if method in self.limits:
            self.buckets[method] = (1.0, until)

    def reserve(self, method: str, n: int) -> None:
        """Keep ``n`` calls of ``method``'s bucket for BOARD-rank calls (0: none)."""
        if n > 0:
            self.reserved[method] = n
        else:
            self.reserved.pop(method, None)

    def refund(self, method: str) -> None:
        """A turn taken and not used (the call was no longer wanted)."""
        if method in self.limits:
            level = self._level(method, self.clock.now())
            self.buckets[method] = (min(float(self.limits[method].burst), level + 1.0), self.clock.now())

    def wait_estimate(self, method: str, rank: int) -> float:
        """About how long a call of ``rank`` queued now would wait for its turn."""
        if method not in self.limits:
            return 0.0
        now = self.clock.now()
        ahead = sum(1 for t in self._queues.get(method, ()) if t.rank <= rank)
        level = self._level(method, now)
        last = self.buckets[method][1]
        need = min(float(self.limits[method].burst), 1.0 + self._kept(method, rank))
        return max(0.0, last - now) + max(0.0, ahead + need - level) * 60.0 / self.limits[method].per_minute

    def _kept(self, method: str, rank: int) -> int:
        """Calls of the bucket a call of ``rank`` must leave for better ones."""
        kept = self.reserved.get(method, 0) if rank > BOARD else 0
        return kept + (1 if rank > URGENT else 0)  # progress leaves the last call to a status change

    async def take(
        self,
        method: str,
        *,
        key: str = "",
        rank: int = ROUTINE,
        paused_until: Callable[[], float],
        end: float | None = None,
        interrupt: Interrupt | None = None,
    ) -> Took:
        """Wait for a turn of ``method``: ``go`` (a token taken), ``deadline``
        (it could not come before ``end``) or ``deferred`` (the interrupt's
        time came first; the message ``key`` keeps its place)."""
        place = (method, key)
        seq = self._places.pop(place, None) if key else None
        turn = _Turn(rank, next(self._seq) if seq is None else seq, method)
        queue = self._queues.setdefault(method, [])
        heapq.heappush(queue, turn)
        took: Took = "deadline"
        try:
            while True:
                now = self.clock.now()
                wait = float("inf")
                if queue[0] is turn:
                    level = self._level(method, now)
                    rate = self.limits[method].per_minute / 60.0
                    refill_from = max(0.0, self.buckets[method][1] - now)
                    need = min(float(self.limits[method].burst), 1.0 + self._kept(method, rank))
                    wait = max(paused_until() - now, refill_from + max(0.0, need - level) / rate)
                    # A microsecond early is a turn: float rounding must not leave
                    # a waiter sleeping for nothing again and again.
                    if wait <= EPSILON_S:
                        self.buckets[method] = (max(0.0, level - 1.0), now)
                        took = "go"
                        if key:
                            self._remember(self._granted, place, turn.seq)
                        return took
                # Only a call that has to wait steps out: a free turn is taken.
                if interrupt is not None and now >= interrupt.due():
                    took = "deferred"
                    return took
                if end is not None and (now >= end or (wait != float("inf") and now + wait > end)):
                    return took
                stop = min(wait, (end - now) if end is not None else float("inf"))
                if interrupt is not None:
                    stop = min(stop, interrupt.due() - now)
                await self._pause(turn, interrupt, stop)
        finally:
            if took == "deferred" and key:
                self._remember(self._places, place, turn.seq)
            self._leave(turn, queue, method)

    @staticmethod
    def _remember(places: OrderedDict[tuple[str, str], int], place: tuple[str, str], seq: int) -> None:
        places[place] = seq
        places.move_to_end(place)
        while len(places) > KEEP_PLACES:
            places.popitem(last=False)

    def hold_place(self, method: str, key: str) -> None:
        """The call that just had its turn was refused (429): its retry keeps its place."""
        seq = self._granted.pop((method, key), None) if key else None
        if seq is not None:
            self._remember(self._places, (method, key), seq)

    async def _pause(self, turn: _Turn, interrupt: Interrupt | None, seconds: float) -> None:
        """Until the head leaves (``turn.wake``), the interrupt fires, or ``seconds`` pass."""
        turn.wake.clear()
        waits: list[Awaitable[Any]] = [turn.wake.wait()]
        if interrupt is not None:
            interrupt.event.clear()
            waits.append(interrupt.event.wait())
        if seconds != float("inf"):
            waits.append(self.clock.sleep(max(0.0, seconds)))
        futures = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in futures:
                f.cancel()

    def _leave(self, turn: _Turn, queue: list[_Turn], method: str) -> None:
        if turn not in queue:
            return
        head = queue[0] is turn
        queue.remove(turn)
        heapq.heapify(queue)
        if not queue:
            self._queues.pop(method, None)
        elif head:
            queue[0].wake.set()


__all__ = [
    "BOARD",
    "EPSILON_S",
    "LOG",
    "PERSON",
    "ROUTINE",
    "URGENT",
    "Interrupt",
    "Limit",
    "MethodPacer",
    "default_limits",
    "limits_with",
]
