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
from spanvisor.chat.retry import Failure, RateLimitStrategy, ServerErrorStrategy
from spanvisor.chat.sending import PacedSender
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
        strategies = (
            RateLimitStrategy(),
            ServerErrorStrategy(retryable=frozenset({"connection", "timeout", "disconnected", "http_5xx"})),
        )
        self.sender = PacedSender("telegram", clock, self.pacer, GLOBAL, strategies, stats)

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
        answer = await self.sender.send(
            self._bucket(chat),
            method,
            lambda: self.api.call(method, {"chat_id": chat_id(chat), **args}),
            lambda a, attempt: (
                None
                if a.ok or NOT_MODIFIED in a.error
                else Failure(method, a.error, a.status, a.retry_after_s, attempt)
            ),
            rank=rank,
            key=key,
            end=end,
            interrupt=interrupt,
            resent=lambda a: a.sent_maybe and method == "sendMessage",
        )
        return DEFERRED if answer == "deferred" else answer

    async def close(self) -> None:
        await self.api.close()


def chat_id(chat: str) -> int | str:
    """A chat as the Bot API takes it: an id, or a public @username."""
    return chat if chat.startswith("@") else int(chat)
