"""The one way a chat channel's call goes out: when its bucket's turn comes
(and the channel's global bucket's, :mod:`.pacing`), tried again as the
retry strategies say (:mod:`.retry`). Telegram's and Teams' posters are
this with their buckets and their reading of an answer; Slack keeps its
own (its tiers and its ambiguous answers).

A 429 pauses the call's whole bucket for ``Retry-After`` (every task
waiting on that chat or thread, not only this call) and the call keeps its
place; a transient failure is sent again after a backoff, never past the
caller's ``end`` (shutdown's deadline). A resend of a call whose answer was
lost is counted (``<channel>_resent_total``): the services have no
idempotency key, and a lost question for a person would be worse than a
line shown twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from spanvisor.sink import Clock
from spanvisor.stats import PipelineStats

from .pacing import Interrupt, Pacer
from .retry import Failure, RetryStrategy, decide

log = logging.getLogger("spanvisor.chat")
R = TypeVar("R")
# The caller's wait was interrupted: it has something better to send first.
DEFERRED: Literal["deferred"] = "deferred"


class PacedSender:
    def __init__(
        self,
        channel: str,
        clock: Clock,
        pacer: Pacer,
        everyone: str,
        strategies: Sequence[RetryStrategy],
        stats: PipelineStats,
        label: str = "method",
    ) -> None:
        """``everyone``: the pacer's bucket every call also takes (the
        channel's limit in all); ``label``: the name of the call counter's
        label (``<channel>_calls_total``)."""
        self.channel, self.clock, self.pacer, self.everyone = channel, clock, pacer, everyone
        self.strategies, self.stats, self.label = strategies, stats, label
        self.paused_until: dict[str, float] = {}

    async def send(
        self,
        bucket: str,
        op: str,
        call: Callable[[], Awaitable[R]],
        failure: Callable[[R, int], Failure | None],
        *,
        rank: int,
        key: str = "",
        end: Callable[[], float | None],
        interrupt: Interrupt | None = None,
        resent: Callable[[R], bool] = lambda _: False,
    ) -> R | Literal["deferred"] | None:
        """``call``'s answer (made again for each try); ``failure`` reads an
        answer at an attempt (None: it is the answer, ok or past mending).
        None when ``end`` came first; :data:`DEFERRED` when ``interrupt``
        fired while the call waited its turn."""
        attempt = 0
        while True:
            took = await self.pacer.take(
                bucket,
                key=key,
                rank=rank,
                paused_until=lambda: self.paused_until.get(bucket, 0.0),
                end=end(),
                interrupt=interrupt,
            )
            if took == "deferred":
                return DEFERRED
            if took != "go":
                return None
            everyone = await self.pacer.take(
                self.everyone, rank=rank, paused_until=lambda: 0.0, end=end(), interrupt=interrupt
            )
            if everyone != "go":
                # The bucket's turn goes back, and the call keeps its place in
                # its queue: a question steps in front at either wait.
                self.pacer.refund(bucket)
                if everyone == "deferred":
                    self.pacer.hold_place(bucket, key)
                    return DEFERRED
                return None
            attempt += 1
            self.stats.inc(f"{self.channel}_calls_total", 1, **{self.label: op})
            answer = await call()
            failed = failure(answer, attempt)
            if failed is None:
                return answer
            verdict = decide(failed, self.strategies)
            if verdict.kind == "rate_limited":
                until = self.clock.now() + verdict.delay_s
                self.paused_until[bucket] = until
                self.pacer.drained(bucket, until)
                self.pacer.hold_place(bucket, key)
                self.stats.inc(f"{self.channel}_rate_limited_total")
                log.debug("%s: %s rate limited; %s waits %.1f s", self.channel, op, bucket, verdict.delay_s)
                continue
            if verdict.kind == "retry":
                stop = end()
                if stop is not None and self.clock.now() + verdict.delay_s > stop:
                    return None
                if resent(answer):
                    self.stats.inc(f"{self.channel}_resent_total")
                log.debug("%s: %s failed (%s); again in %.1f s", self.channel, op, failed.error, verdict.delay_s)
                await self.clock.sleep(verdict.delay_s)
                continue
            return answer
