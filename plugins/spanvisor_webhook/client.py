"""One signed POST and what its answer means; aiohttp, imported when the sink starts.

Each attempt is signed with a fresh timestamp, so a request retried after a
long outage still falls inside the receiver's window. Redirects are not
followed (the signature and body would go to a host nobody configured).
Errors name the URL's scheme and host only: a path or query may hold a
token, and the secret only ever enters the HMAC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from spanvisor import __version__
from spanvisor.sink import retry_after_seconds
from spanvisor_webhook.settings import where
from spanvisor_webhook.signing import signature

MAX_RETRY_AFTER_S = 600.0
MAX_ANSWER = 1 << 16
USER_AGENT = f"spanvisor-webhook/{__version__}"
# Answers that may succeed if sent again: timeouts, rate limits, server errors.
TRANSIENT = frozenset({408, 425, 429})

Outcome = Literal["delivered", "retry", "rejected"]


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    status: int | None = None
    # Seconds the receiver asked us to wait (Retry-After), if it said.
    retry_after: float | None = None
    detail: str = ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After``, at most MAX_RETRY_AFTER_S."""
    return retry_after_seconds(value, MAX_RETRY_AFTER_S)


class WebhookClient:
    def __init__(self, url: str, secret: str, timeout_s: float) -> None:
        self.url = url
        self.where = where(url)
        self._secret = secret
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )

    async def close(self) -> None:
        await self._session.close()

    async def post(self, body: bytes, intervention_id: str) -> Attempt:
        timestamp = str(int(time.time()))
        headers = {
            "X-Spanvisor-Timestamp": timestamp,
            "X-Spanvisor-Signature": signature(self._secret, timestamp, body),
            "X-Spanvisor-Intervention-Id": intervention_id,
        }
        try:
            async with self._session.post(self.url, data=body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                await resp.content.read(MAX_ANSWER)  # unread, the connection could not be reused
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Attempt("retry", None, None, f"POST {self.where}: {type(exc).__name__}")
        detail = f"POST {self.where}: HTTP {status}"
        if 200 <= status < 300:
            return Attempt("delivered", status, None, detail)
        if status >= 500 or status in TRANSIENT:
            return Attempt("retry", status, retry_after, detail)
        return Attempt("rejected", status, None, detail)
