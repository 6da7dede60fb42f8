"""Telegram's limits, kept before sending (the shared :class:`Pacer`), and
the one way every call goes out.

Telegram's FAQ: in one chat about one message a second; in a group no more
than 20 a minute; about 30 a second in all. Edits count as messages. Each
chat is a bucket of the pacer (a group's at nine tenths of its rate, so the
time a request spends on the way never lets 21 land in one minute), and
every call takes a turn of the global bucket too. Calls wait by rank: a
question for a person or a failure first, then a status change and the
thread's lines, then routine edits.

A 429 anyway (another process on the same bot) pauses the chat for
``retry_after`` and its bucket starts empty after it. A 5xx, a timeout or a
dropped connection is sent again with backoff: Telegram has no idempotency
key, so a reply whose answer was lost may show twice (counted in
``telegram_resent_total``); a lost question for a person would be worse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spanvisor.chat.pacing import Interrupt, Limit, Pacer
from spanvisor.chat.retry import Failure, RateLimitStrategy, ServerErrorStrategy, decide
from spanvisor.sink import Clock
from spanvisor.stats import PipelineStats

from .api import BotApi, BotReply

log = logging.getLogger("spanvisor.telegram")
GLOBAL = "all"
GROUP_MARGIN = 0.9
# Telegram's answer to an edit that changes nothing: the message shows what we meant.
NOT_MODIFIED = "message is not modified"
# A call that stepped out of its wait: its caller sends something better first.
DEFERRED = BotReply(False, status=0, error="deferred")


@dataclass(frozen=True, slots=True)
class Rates:
    chat_per_minute: float = 60.0
    group_per_minute: float = 20.0
    global_per_second: float = 30.0


def is_group(chat: str) -> bool:
    """A group's, a supergroup's or a channel's id is negative; a @username is a channel."""
    return chat.startswith("-") or chat.startswith("@")


class Poster:
    """Sends one Bot API call when its chat's turn comes; retries what is worth it."""

    def __init__(self, api: BotApi, clock: Clock, rates: Rates, stats: PipelineStats) -> None:
        self.api, self.clock, self.rates, self.stats = api, clock, rates, stats
        self.pacer = Pacer(
            clock, {GLOBAL: Limit(rates.global_per_second * 60.0, max(1, int(rates.global_per_second) // 6))}
        )
        self.paused_until: dict[str, float] = {}
        self.strategies = (
            RateLimitStrategy(),
            ServerErrorStrategy(retryable=frozenset({"connection", "timeout", "disconnected", "http_5xx"})),
        )

    def _bucket(self, chat: str) -> str:
        key = f"chat:{chat}"
        if key not in self.pacer.limits:
            per_minute = self.rates.chat_per_minute
            if is_group(chat):
                per_minute = min(per_minute, self.rates.group_per_minute * GROUP_MARGIN)
            self.pacer.limits[key] = Limit(per_minute, 1)
        return key

    async def send(
        self,
        method: str,
        chat: str,
        args: dict[str, Any],
        *,
        rank: int,
        key: str = "",
        end: Callable[[], float | None],
        interrupt: Interrupt | None = None,
    ) -> BotReply | None:
        """The call's answer (ok, or an error no retry mends); None when ``end``
        came first (shutting down); :data:`DEFERRED` when ``interrupt`` said
        its caller has something better to send while this one waited."""
        bucket = self._bucket(chat)
        attempt = 0
        while True:
            paused = lambda: self.paused_until.get(bucket, 0.0)  # noqa: E731
            took = await self.pacer.take(
                bucket, key=key, rank=rank, paused_until=paused, end=end(), interrupt=interrupt
            )
            if took == "deferred":
                return DEFERRED
            if took != "go":
                return None
            if await self.pacer.take(GLOBAL, rank=rank, paused_until=lambda: 0.0, end=end()) != "go":
                self.pacer.refund(bucket)
                return None
            attempt += 1
            self.stats.inc("telegram_calls_total", method=method)
            answer = await self.api.call(method, {"chat_id": chat_id(chat), **args})
            if answer.ok or NOT_MODIFIED in answer.error:
                return answer
            failure = Failure(method, answer.error, answer.status, answer.retry_after_s, attempt)
            verdict = decide(failure, self.strategies)
            if verdict.kind == "rate_limited":
                until = self.clock.now() + verdict.delay_s
                self.paused_until[bucket] = until
                self.pacer.drained(bucket, until)
                self.pacer.hold_place(bucket, key)
                self.stats.inc("telegram_rate_limited_total")
                continue
            if verdict.kind == "retry":
                if answer.sent_maybe and method == "sendMessage":
                    self.stats.inc("telegram_resent_total")
                stop = end()
                if stop is not None and self.clock.now() + verdict.delay_s > stop:
                    return None
                await self.clock.sleep(verdict.delay_s)
                continue
            return answer

    async def close(self) -> None:
        await self.api.close()


def chat_id(chat: str) -> int | str:
    """A chat as the Bot API takes it: an id, or a public @username."""
    return chat if chat.startswith("@") else int(chat)
