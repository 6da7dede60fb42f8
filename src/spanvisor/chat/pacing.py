"""A channel's rate limits, kept before sending instead of learnt from 429s.

Chat services limit calls per bucket: Slack per method and workspace (its
tiers, :mod:`spanvisor_slack.pacing`), Telegram per chat and in all
(:mod:`spanvisor_telegram.limits`). A sink that sends as soon as it can and
backs off only after a 429 spends most of its calls on 429s: a hundred
tasks each waiting to edit their messages all go at once when a pause ends,
one gets through, the rest are refused and wait again. Here each limited
bucket has a token bucket at the service's rate (a small burst, below the
service's own, so a little network jitter never overdraws it) and a queue
of the calls waiting for it: the best rank first (a question for a person
or a failure, then any other status change, then a work log, then a
routine parent edit), then the one that has waited longest; a channel's
board (issue 67) ahead of all, with a call of the bucket kept for it once
one exists (:meth:`Pacer.reserve`). Progress (a work log, a routine edit)
never takes a bucket's last call: that one is kept for a status change, so
a question asked after a quiet stretch goes at once even when work logs
have used the rest. After a 429 anyway (another process on the same token)
the bucket pauses for ``Retry-After`` and starts empty after the pause: the
waiting calls go one by one at the bucket's rate, never all together.

A waiting call keeps its place when it steps out (its caller has a thread
reply to post first, see :class:`Interrupt`) and comes back for the same
message (``key``): the edit it then sends is built from the latest state,
so many changes of one message while it waited are one call.
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

# Ranks of calls in a bucket's queue: lower goes first.
BOARD = -2  # a channel's board (Slack's .board): one call shows every task of a busy channel; paced by its own gap
PERSON = -1  # a new question for a person, or a failure: someone must act on it now (issue 67: p95 <= 2 s)
URGENT = 0  # a status change, a person's decision, the final state
LOG = 1  # a work log showing tool calls
ROUTINE = 2  # a parent's periodic refresh
KEEP_PLACES = 10_000
EPSILON_S = 1e-6
Took = Literal["go", "deadline", "deferred"]


@dataclass(frozen=True, slots=True)
class Limit:
    per_minute: float
    burst: int


@dataclass
class Interrupt:
    """Lets a caller step out of a long wait: ``event`` says something changed,
    ``due()`` is the clock time from which it has something better to do
    (``inf``: nothing)."""

    event: asyncio.Event
    due: Callable[[], float]


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    key: str = field(compare=False)
    wake: asyncio.Event = field(compare=False, default_factory=asyncio.Event)


class Pacer:
    """A token bucket and a queue of waiting calls per limited bucket (a
    method, a chat: whatever the service counts by)."""

    def __init__(self, clock: Clock, limits: Mapping[str, Limit]) -> None:
        self.clock = clock
        self.limits = dict(limits)
        self.buckets: dict[str, tuple[float, float]] = {}
        self._queues: dict[str, list[_Waiter]] = {}
        self._seq = itertools.count()
        # A message's place in its bucket's queue while its edit stepped out.
        self._places: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._granted: OrderedDict[tuple[str, str], int] = OrderedDict()  # the last turn of each message
        # Calls of a bucket kept for BOARD-rank calls (.board): a
        # board due now never waits for the bucket to refill behind others.
        self.reserved: dict[str, int] = {}

    def limited(self, bucket: str) -> bool:
        return bucket in self.limits

    def _level(self, bucket: str, now: float) -> float:
        limit = self.limits[bucket]
        level, last = self.buckets.get(bucket, (float(limit.burst), now))
        level = min(float(limit.burst), level + max(0.0, now - last) * limit.per_minute / 60.0)
        self.buckets[bucket] = (level, max(now, last))
        return level

    def drained(self, bucket: str, until: float) -> None:
        """A 429: when the pause ends the bucket holds one call, so the waiting
        calls resume one by one at the bucket's rate, never all together."""
        if bucket in self.limits:
            self.buckets[bucket] = (1.0, until)

    def reserve(self, bucket: str, n: int) -> None:
        """Keep ``n`` calls of ``bucket`` for BOARD-rank calls (0: none)."""
        if n > 0:
            self.reserved[bucket] = n
        else:
            self.reserved.pop(bucket, None)

    def refund(self, bucket: str) -> None:
        """A turn taken and not used (the call was no longer wanted)."""
        if bucket in self.limits:
            level = self._level(bucket, self.clock.now())
            self.buckets[bucket] = (min(float(self.limits[bucket].burst), level + 1.0), self.clock.now())

    def wait_estimate(self, bucket: str, rank: int) -> float:
        """About how long a call of ``rank`` queued now would wait for its turn."""
        if bucket not in self.limits:
            return 0.0
        now = self.clock.now()
        ahead = sum(1 for t in self._queues.get(bucket, ()) if t.rank <= rank)
        level = self._level(bucket, now)
        last = self.buckets[bucket][1]
        need = min(float(self.limits[bucket].burst), 1.0 + self._kept(bucket, rank))
        return max(0.0, last - now) + max(0.0, ahead + need - level) * 60.0 / self.limits[bucket].per_minute

    def _kept(self, bucket: str, rank: int) -> int:
        """Calls of the bucket a call of ``rank`` must leave for better ones."""
        kept = self.reserved.get(bucket, 0) if rank > BOARD else 0
        return kept + (1 if rank > URGENT else 0)  # progress leaves the last call to a status change

    async def take(
        self,
        bucket: str,
        *,
        key: str = "",
        rank: int = ROUTINE,
        paused_until: Callable[[], float],
        end: float | None = None,
        interrupt: Interrupt | None = None,
    ) -> Took:
        """Wait for a turn of ``bucket``: ``go`` (a token taken), ``deadline``
        (it could not come before ``end``) or ``deferred`` (the interrupt's
        time came first; the message ``key`` keeps its place)."""
        place = (bucket, key)
        seq = self._places.pop(place, None) if key else None
        turn = _Waiter(rank, next(self._seq) if seq is None else seq, bucket)
        queue = self._queues.setdefault(bucket, [])
        heapq.heappush(queue, turn)
        took: Took = "deadline"
        try:
            while True:
                now = self.clock.now()
                wait = float("inf")
                if queue[0] is turn:
                    level = self._level(bucket, now)
                    rate = self.limits[bucket].per_minute / 60.0
                    refill_from = max(0.0, self.buckets[bucket][1] - now)
                    need = min(float(self.limits[bucket].burst), 1.0 + self._kept(bucket, rank))
                    wait = max(paused_until() - now, refill_from + max(0.0, need - level) / rate)
                    # A microsecond early is a turn: float rounding must not leave
                    # a waiter sleeping for nothing again and again.
                    if wait <= EPSILON_S:
                        self.buckets[bucket] = (max(0.0, level - 1.0), now)
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
            self._leave(turn, queue, bucket)

    @staticmethod
    def _remember(places: OrderedDict[tuple[str, str], int], place: tuple[str, str], seq: int) -> None:
        places[place] = seq
        places.move_to_end(place)
        while len(places) > KEEP_PLACES:
            places.popitem(last=False)

    def hold_place(self, bucket: str, key: str) -> None:
        """The call that just had its turn was refused (429): its retry keeps its place."""
        seq = self._granted.pop((bucket, key), None) if key else None
        if seq is not None:
            self._remember(self._places, (bucket, key), seq)

    async def _pause(self, turn: _Waiter, interrupt: Interrupt | None, seconds: float) -> None:
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

    def _leave(self, turn: _Waiter, queue: list[_Waiter], bucket: str) -> None:
        if turn not in queue:
            return
        head = queue[0] is turn
        queue.remove(turn)
        heapq.heapify(queue)
        if not queue:
            self._queues.pop(bucket, None)
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
    "Pacer",
]
