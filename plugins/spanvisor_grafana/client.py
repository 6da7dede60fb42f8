"""A small async client for Grafana's annotations API, with its retry policy.

One aiohttp session per sink. 429 waits ``Retry-After`` and pauses every call
of this client (Grafana's limit, usually a proxy's, is per token, not per
endpoint); 5xx and connection errors back off exponentially with jitter. All
waits are ``asyncio.sleep`` inside a budget, so the loop is never blocked;
when the budget runs out the caller gets :class:`TransientError` and hands the
batch back to the pipeline. Other 4xx are permanent and carry the fix a user
needs. The token is only ever put in the Authorization header: errors and
logs name the URL path and the status, never the headers.

Time comes from a :class:`Clock` (``now()`` and ``async sleep()``; the
event loop's by default) and jitter from a ``random.Random``, both
injectable, so tests run the real schedule against its budget without
waiting for it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from spanvisor.sink import Clock, retry_after_seconds
from spanvisor_grafana.errors import GrafanaError, PermanentError, TransientError

MAX_RETRY_AFTER_S = 300.0
MAX_BODY = 1 << 16

__all__ = ["GrafanaClient", "GrafanaError", "LoopClock", "PermanentError", "TransientError"]


class LoopClock:
    """The running event loop's clock and ``asyncio.sleep``: the default."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Attempt(GrafanaError):
    def __init__(self, message: str, status: int | None, retry_after: float | None, ambiguous: bool) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after
        # The request may have been applied although we saw a failure.
        self.ambiguous = ambiguous


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``, at most MAX_RETRY_AFTER_S."""
    return retry_after_seconds(value, MAX_RETRY_AFTER_S)


Recover = Callable[[], Awaitable[Any]]


class GrafanaClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        retry_budget_s: float = 30.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 15.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "spanvisor-grafana",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retry_budget_s = retry_budget_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.clock: Clock = clock or LoopClock()
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._paused_until = 0.0
        self.retries = 0

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _once(
        self, method: str, path: str, body: Mapping[str, Any] | None, params: list[tuple[str, str]] | None
    ) -> Any:
        url = self.base_url + path
        try:
            async with self._sess().request(method, url, json=body, params=params, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_BODY)
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientConnectorError, aiohttp.ClientPayloadError) as exc:
            # Connector errors happen before anything was sent.
            sent = isinstance(exc, aiohttp.ClientPayloadError)
            raise _Attempt(f"{method} {path}: {type(exc).__name__}", None, None, sent) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Attempt(f"{method} {path}: {type(exc).__name__}", None, None, True) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        message = data.get("message") if isinstance(data, dict) else None
        detail = f"{method} {path}: HTTP {status}" + (f" {message!r}" if message else "")
        if status == 429:
            raise _Attempt(detail, status, retry_after, False)
        if status >= 500:
            raise _Attempt(detail, status, retry_after, True)
        if status >= 300:
            raise PermanentError(detail, status)
        return data

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: list[tuple[str, str]] | None = None,
        *,
        recover: Recover | None = None,
    ) -> Any:
        """One request, retried within the budget.

        ``recover`` runs before a retry that follows an ambiguous failure; if
        it returns something other than None, that is the call's result (e.g.
        the annotation a timed-out POST did create).
        """
        clock = self.clock
        deadline = clock.now() + self.retry_budget_s
        attempt = 0
        ambiguous = False
        while True:
            pause = self._paused_until - clock.now()
            if pause > 0:
                if clock.now() + pause > deadline:
                    raise TransientError(f"{method} {path}: rate limited by Grafana", 429)
                await clock.sleep(pause)
            try:
                if ambiguous and recover is not None:
                    found = await recover()
                    if found is not None:
                        return found
                return await self._once(method, path, body, params)
            except _Attempt as exc:
                attempt += 1
                self.retries += 1
                ambiguous = ambiguous or exc.ambiguous
                if exc.retry_after is not None:
                    delay = exc.retry_after
                    if exc.status == 429:
                        self._paused_until = max(self._paused_until, clock.now() + delay)
                else:
                    delay = self._rng.uniform(*self.backoff_range(attempt))
                if clock.now() + delay > deadline:
                    raise TransientError(str(exc), exc.status) from None
                await clock.sleep(delay)

    def backoff_range(self, attempt: int) -> tuple[float, float]:
        """Where the wait after failed attempt ``attempt`` (1, 2, ...) falls without a
        Retry-After: "equal jitter" over an exponential cap, ``[cap/2, cap]``."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempt - 1, 62))
        return cap / 2, cap
