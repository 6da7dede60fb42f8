"""Web API calls with Slack's rate limits, retries and error classes.

One :class:`Transport` per sink: one ``AsyncWebClient`` on one aiohttp
session, each limited method paced at its Slack tier before sending, best
rank first (:mod:`.pacing`), a pause per method after HTTP 429 (shared by
every task), and a spacing per channel for posts (about one per second),
handed out parents first (:mod:`.turns`). Calls run only in the sink's
background tasks, never in ``export``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from spanvisor.chat.pacing import EPSILON_S, LOG, URGENT, Interrupt, Limit, Pacer
from spanvisor.chat.retry import Failure, RetryStrategy, RetryVerdict, decide
from spanvisor.sink import Clock, MonotonicClock

from .channels import ChannelDirectory
from .pacing import default_limits
from .retry import default_strategies
from .turns import REPLY, ChannelTurns

log = logging.getLogger("spanvisor.slack")
# Methods that read: sent as GET with query parameters, as slack_sdk's own
# wrappers send them (not every read method takes a JSON body).
READ_METHODS = frozenset({"conversations.history", "conversations.list", "chat.getPermalink"})


class ApiClient(Protocol):
    async def call(self, method: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The response body when ok; raises :class:`CallError` otherwise."""
        ...

    async def close(self) -> None: ...


class CallError(Exception):
    def __init__(self, error: str, status: int = 200, retry_after_s: float | None = None) -> None:
        super().__init__(f"{error} (HTTP {status})")
        self.error, self.status, self.retry_after_s = error, status, retry_after_s


class SlackClient:
    """slack_sdk's AsyncWebClient, retries off (we decide), one session."""

    def __init__(self, token: str, base_url: str | None, timeout_s: float) -> None:
        import aiohttp
        from slack_sdk.web.async_client import AsyncWebClient

        self._token = token
        # Where calls go and what points there: named once when it does not answer.
        self.base_url = base_url or "https://slack.com/api/"
        self._pointed_by = (
            "SPANVISOR_SLACK_BASE_URL" if base_url else "the default; SPANVISOR_SLACK_BASE_URL changes it"
        )
        self.unreachable_since: float | None = None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
        kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
        self._client = AsyncWebClient(
            token=token, session=self._session, timeout=int(timeout_s) or 1, retry_handlers=[], **kwargs
        )

    async def call(self, method: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        import aiohttp
        from slack_sdk.errors import SlackApiError

        try:
            if method in READ_METHODS:
                resp = await self._client.api_call(method, http_verb="GET", params=dict(payload))
            else:
                resp = await self._client.api_call(method, json=dict(payload))
        except SlackApiError as exc:
            status = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error") or ("http_5xx" if status >= 500 else f"http_{status}"))
            after = exc.response.headers.get("Retry-After") if exc.response.headers else None
            raise CallError(error, status, _seconds(after)) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise CallError("timeout", 0) from None
        except aiohttp.ServerDisconnectedError:
            # The request went out; Slack may have acted on it.
            raise CallError("timeout", 0) from None
        except (aiohttp.ClientError, OSError) as exc:
            self._unreachable(method, exc)
            raise CallError("connection", 0) from None
        if self.unreachable_since is not None:
            log.warning(
                "Slack answers again at %s (after %.0f s)", self.base_url, time.monotonic() - self.unreachable_since
            )
            self.unreachable_since = None
        return dict(resp.data) if isinstance(resp.data, dict) else {}

    def _unreachable(self, method: str, exc: BaseException) -> None:
        """A connection that failed: said once per outage, with the URL and its setting."""
        why = self._redact(str(exc)) or type(exc).__name__
        if self.unreachable_since is not None:
            log.debug("connection error on %s: %s", method, why)
            return
        self.unreachable_since = time.monotonic()
        log.warning(
            "Slack cannot be reached at %s (%s): %s; updates wait and are retried with backoff "
            "(said again when it answers)",
            self.base_url,
            self._pointed_by,
            why,
        )

    def _redact(self, s: str) -> str:
        return s.replace(self._token, "****") if self._token else s

    async def close(self) -> None:
        await self._session.close()


class DryRunClient:
    """Builds nothing new: logs what would be sent and answers like Slack."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        self.sent.append((method, dict(payload)))
        log.info("dry-run %s %s", method, json.dumps(payload, ensure_ascii=False, sort_keys=True))
        ts = f"{int(time.time())}.{next(self._seq):06d}"
        channel = str(payload.get("channel", "CDRYRUN"))
        return {"ok": True, "channel": channel, "ts": payload.get("ts", ts), "permalink": None}

    async def close(self) -> None:
        return None


CLAIM_LOST = "claim_lost"
DEFERRED = "deferred"
# A work log edit expected to wait longer than this: edits are scarce, and a
# tool call is posted as a reply of its own rather than folded into the log.
SCARCE_S = 1.0


def _seconds(v: str | None) -> float | None:
    try:
        return max(0.0, float(v)) if v is not None else None
    except ValueError:
        return None


@dataclass
class CallOutcome:
    data: dict[str, Any] | None = None
    failure: Failure | None = None
    decision: RetryVerdict | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None

    @property
    def claim_lost(self) -> bool:
        """``before_call`` said no: another owner holds the claim; nothing was sent."""
        return self.failure is not None and self.failure.error == CLAIM_LOST

    @property
    def deferred(self) -> bool:
        """The caller's interrupt came before the method's turn: nothing was sent."""
        return self.failure is not None and self.failure.error == DEFERRED


@dataclass
class Transport:
    client: ApiClient
    clock: Clock = field(default_factory=MonotonicClock)
    channel_interval_s: float = 1.0
    # Slack allows "about one message per second per channel, with short
    # bursts": a token bucket of this many posts refilled one per interval.
    channel_burst: int = 3
    strategies: tuple[RetryStrategy, ...] = field(default_factory=default_strategies)
    on_call: Callable[[str], None] | None = None
    paused_until: dict[str, float] = field(default_factory=dict)
    # Learns each channel name's ID from the posts' answers.
    channels: ChannelDirectory = field(default_factory=ChannelDirectory)
    # Calls a minute (and burst) per method, kept before sending (.pacing).
    limits: dict[str, Limit] = field(default_factory=default_limits)

    def __post_init__(self) -> None:
        self.turns = ChannelTurns(self.clock, self.channel_interval_s, self.channel_burst, self.channels)
        self.pacer = Pacer(self.clock, self.limits)

    def edits_scarce(self) -> bool:
        """A work log edit queued now would wait past :data:`SCARCE_S`."""
        pause = self.paused_until.get("chat.update", 0.0) - self.clock.now()
        return max(pause, self.pacer.wait_estimate("chat.update", LOG)) > SCARCE_S

    def edit_free(self) -> bool:
        """A status change's edit would go at once: no pause, no queue, a token in the bucket."""
        return self.paused_until.get("chat.update", 0.0) <= self.clock.now() and (
            self.pacer.wait_estimate("chat.update", URGENT) <= EPSILON_S
        )

    async def send(
        self,
        method: str,
        build: Callable[[], Mapping[str, Any]],
        *,
        deadline: Callable[[], float | None] = lambda: None,
        before_call: Callable[[], Awaitable[bool]] | None = None,
        rank: int = REPLY,
        key: str = "",
        interrupt: Interrupt | None = None,
        rank_of: Callable[[], int] | None = None,
    ) -> CallOutcome:
        """Call ``method`` until it succeeds, fails for good, or the deadline
        passes. ``build`` runs before each attempt (for a paced method after
        the wait for its turn), so a retried or long-waiting edit sends the
        latest state. ``before_call`` runs after the wait for the turn,
        right before each HTTP request; False cancels the call (a post whose
        claim was taken over while it waited; the turn is given back).
        ``rank``: a post's place in its channel's queue
        (:data:`~.turns.PARENT` goes first), or a paced call's in its
        method's (:mod:`.pacing`); ``key`` names the message a paced call
        acts on, and ``interrupt`` lets it step out of the wait (outcome
        ``deferred``) keeping its place. ``rank_of``: a post's rank as things
        stand, looked at again when :meth:`~.turns.ChannelTurns.rerank` is
        called for its channel."""
        attempt = 0
        while True:
            attempt += 1
            if self.pacer.limited(method):
                took = await self.pacer.take(
                    method,
                    key=key,
                    rank=rank,
                    paused_until=lambda: self.paused_until.get(method, 0.0),
                    end=deadline(),
                    interrupt=interrupt,
                )
                if took != "go":
                    why = DEFERRED if took == "deferred" else "deadline"
                    return CallOutcome(failure=Failure(method, why), decision=RetryVerdict("retry"))
                payload = build()
            else:
                payload = build()
                if not await self._wait_turn(method, payload, deadline(), rank, rank_of):
                    return CallOutcome(failure=Failure(method, "deadline"), decision=RetryVerdict("retry"))
            if before_call is not None and not await before_call():
                self.pacer.refund(method)
                self.pacer.hold_place(method, key)
                return CallOutcome(failure=Failure(method, CLAIM_LOST), decision=RetryVerdict("permanent"))
            try:
                if self.on_call:
                    self.on_call(method)
                data = await self.client.call(method, payload)
            except CallError as exc:
                failure = Failure(method, exc.error, exc.status, exc.retry_after_s, attempt)
                d = decide(failure, self.strategies)
                if d.kind in {"permanent", "ambiguous"}:
                    return CallOutcome(failure=failure, decision=d)
                if d.pause_method:
                    until = self.clock.now() + d.delay_s
                    self.paused_until[method] = max(self.paused_until.get(method, 0.0), until)
                    self.pacer.drained(method, self.paused_until[method])
                    self.pacer.hold_place(method, key)
                    log.info("Slack rate-limited %s: pausing it for %.1fs", method, d.delay_s)
                    continue
                end = deadline()
                if end is not None and self.clock.now() + d.delay_s > end:
                    return CallOutcome(failure=failure, decision=d)
                log.debug("Slack %s failed (%s, attempt %d): retrying in %.1fs", method, exc.error, attempt, d.delay_s)
                await self.clock.sleep(d.delay_s)
                continue
            channel = payload.get("channel")
            if method == "chat.postMessage" and isinstance(channel, str) and data.get("channel"):
                cid = str(data["channel"])
                self.channels.learn(channel, cid)
                # Posts by name and by ID share one bucket: Slack limits the channel.
                self.turns.learned(channel, cid)
            return CallOutcome(data=data)

    async def _wait_turn(
        self,
        method: str,
        payload: Mapping[str, Any],
        end: float | None,
        rank: int,
        rank_of: Callable[[], int] | None = None,
    ) -> bool:
        """Wait for the method's 429 pause and, for posts, the channel's turn."""

        def paused_until() -> float:
            return self.paused_until.get(method, 0.0)

        if method == "chat.postMessage" and self.channel_interval_s > 0:
            return await self.turns.take(str(payload.get("channel", "")), rank, paused_until, end, rank_of)
        while True:
            now = self.clock.now()
            wait = paused_until() - now
            if wait <= 0:
                return True
            if end is not None and now + wait > end:
                return False
            await self.clock.sleep(wait)
