"""The Bot API over HTTP (https://core.telegram.org/bots/api), a result
for every call instead of an exception.

Each call is ``POST <base>/bot<token>/<method>`` with a JSON body; Telegram
answers ``{"ok": true, "result": …}`` or ``{"ok": false, "error_code": N,
"description": "…", "parameters": {"retry_after": s}}``. The token is in
the path, so nothing here ever logs or returns the URL: an error names the
method and Telegram's description only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class BotReply:
    ok: bool
    result: Any = None
    status: int = 200
    # Telegram's description, or ours: "connection" (nothing was sent),
    # "timeout" / "disconnected" (it may have been done), "http_5xx".
    error: str = ""
    retry_after_s: float | None = None

    @property
    def sent_maybe(self) -> bool:
        """The request may have reached Telegram and been done."""
        return self.error in ("timeout", "disconnected") or self.status >= 500


class BotApi:
    def __init__(self, token: str, base_url: str, timeout_s: float) -> None:
        self._prefix = f"{base_url.rstrip('/')}/bot{token}/"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def call(self, method: str, args: dict[str, Any]) -> BotReply:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._http.post(self._prefix + method, json=args) as resp:
                status = resp.status
                body = await resp.read()
        except aiohttp.ClientConnectorError:
            return BotReply(False, status=0, error="connection")
        except TimeoutError:
            return BotReply(False, status=0, error="timeout")
        except aiohttp.ClientError:
            return BotReply(False, status=0, error="disconnected")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return BotReply(False, status=status, error="http_5xx" if status >= 500 else f"http_{status}")
        if doc.get("ok") is True:
            return BotReply(True, doc.get("result"), status)
        params = doc.get("parameters")
        retry = params.get("retry_after") if isinstance(params, dict) else None
        return BotReply(
            False,
            status=status,
            error=str(doc.get("description") or f"http_{status}")[:300],
            retry_after_s=float(retry) if isinstance(retry, int | float) else None,
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
