"""Whose post goes next in a channel: parents first, then replies, oldest waiting first.

Slack allows about one post per second per channel (short bursts aside), so
when a channel has a backlog, the order in which waiting posts get the
channel's turns decides who waits. Left to chance, a task that just started
can wait minutes for its parent behind the milestone replies of tasks that
are long finished (after a restart's replay, thousands of them). The
channel's posts therefore queue by rank: a task's first message (its parent,
and a status alert, also top level) goes ahead of every thread reply, and
among equals the one that has waited longest goes first, so a task with
many replies takes turns with the others instead of holding the channel.
Each task still posts one message at a time, in order (its worker awaits
each post), so a task's replies keep their order.

Four ranks (issue 67, a busy channel): :data:`FIRST` (a channel's board, and
the parent of a task that waits for a person or failed: someone must see it
now), :data:`PARENT` (other parents, status alerts), :data:`PRIORITY`
(replies that say an approval, a decision, an error or a final state) and
:data:`REPLY` (progress). A waiting parent whose task comes to need a person
is moved up (:meth:`ChannelTurns.rerank`), so it never waits behind the
parents of tasks that only work.

The token bucket is the one the transport always had (``burst`` posts, one
more per ``interval_s``); only the order of the waiters is new. A waiter
that is not at the head of its channel's queue waits for the head to leave
(it took its turn, gave up at the deadline or was cancelled), or for its
own deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from spanvisor.sink import Clock

from .channels import ChannelDirectory

FIRST = 0
PARENT = 1
PRIORITY = 2
REPLY = 3


@dataclass(order=True)
class _Turn:
    rank: int
    seq: int
    key: str = field(compare=False)
    wake: asyncio.Event = field(compare=False, default_factory=asyncio.Event)
    # The rank as things stand now (a parent's task may come to need a person while it waits).
    rank_of: Callable[[], int] | None = field(compare=False, default=None)


class ChannelTurns:
    """Per-channel queues of posts waiting for the channel's bucket."""

    def __init__(self, clock: Clock, interval_s: float, burst: int, channels: ChannelDirectory) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.burst = burst
        self.channels = channels
        self.buckets: dict[str, tuple[float, float]] = {}
        self._queues: dict[str, list[_Turn]] = {}
        self._seq = itertools.count()

    def key(self, channel: str) -> str:
        """Posts by name and by ID share one queue and bucket once the ID is known."""
        return self.channels.known(channel) or channel

    def learned(self, channel: str, cid: str) -> None:
        if channel in self.buckets and cid not in self.buckets:
            self.buckets[cid] = self.buckets[channel]

    def waiting(self, channel: str) -> int:
        return len(self._queues.get(self.key(channel), ()))

    def rerank(self, channel: str) -> None:
        """Look again at the rank of each post waiting in ``channel`` that
        can change (``rank_of``); a better one moves up the queue."""
        queue = self._queues.get(self.key(channel))
        if not queue:
            return
        head, moved = queue[0], False
        for turn in queue:
            if turn.rank_of is not None and (rank := turn.rank_of()) != turn.rank:
                turn.rank, moved = rank, True
        if moved:
            heapq.heapify(queue)
            if queue[0] is not head:
                queue[0].wake.set()

    def _level(self, key: str, now: float) -> float:
        level, last = self.buckets.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) / self.interval_s)
        self.buckets[key] = (level, now)
        return level

    async def take(
        self,
        channel: str,
        rank: int,
        paused_until: Callable[[], float],
        end: float | None,
        rank_of: Callable[[], int] | None = None,
    ) -> bool:
        """Wait for this post's turn in ``channel`` (and the method's 429
        pause, ``paused_until``); False when it cannot come before ``end``.
        ``rank_of``: the post's rank now, looked at again by :meth:`rerank`."""
        turn = _Turn(rank, next(self._seq), self.key(channel), rank_of=rank_of)
        heapq.heappush(self._queues.setdefault(turn.key, []), turn)
        try:
            while True:
                self._follow(turn, channel)
                queue = self._queues[turn.key]
                now = self.clock.now()
                if queue[0] is not turn:
                    if not await self._wait_head(turn, end, now):
                        return False
                    continue
                level = self._level(turn.key, now)
                wait = max(paused_until() - now, (1.0 - level) * self.interval_s)
                if wait <= 0:
                    self.buckets[turn.key] = (level - 1.0, now)
                    return True
                if end is not None and now + wait > end:
                    return False
                # A newcomer of a better rank may take the head meanwhile:
                # the loop looks again after the sleep.
                await self.clock.sleep(wait)
        finally:
            self._leave(turn)

    def _follow(self, turn: _Turn, channel: str) -> None:
        """The channel's ID was learnt while this post waited under its name: move over."""
        key = self.key(channel)
        if key == turn.key:
            return
        self._leave(turn)
        turn.key = key
        heapq.heappush(self._queues.setdefault(key, []), turn)

    async def _wait_head(self, turn: _Turn, end: float | None, now: float) -> bool:
        turn.wake.clear()
        if end is None:
            await turn.wake.wait()
            return True
        if now >= end:
            return False
        woken = asyncio.ensure_future(turn.wake.wait())
        timer = asyncio.ensure_future(self.clock.sleep(end - now))
        try:
            await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()
        return turn.wake.is_set() or self.clock.now() < end

    def _leave(self, turn: _Turn) -> None:
        queue = self._queues.get(turn.key)
        if queue is None or turn not in queue:
            return
        head = queue[0] is turn
        queue.remove(turn)
        heapq.heapify(queue)
        if not queue:
            del self._queues[turn.key]
        elif head:
            queue[0].wake.set()
