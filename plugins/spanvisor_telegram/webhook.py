"""Presses by webhook: Telegram POSTs each update to serve's admin port.

``setWebhook`` is called at start with the public address
(``SPANVISOR_TELEGRAM_WEBHOOK_URL``, reaching ``POST /telegram/updates``
through a proxy) and a secret token; Telegram sends the token back in
``X-Telegram-Bot-Api-Secret-Token`` with every update. A POST without it,
or with another, is refused (401) before its body is read: the token is
the only proof the update is Telegram's (the body is not signed), so
whoever holds it could press as anyone. A good update is answered 200 at
once and its press handed to the sink's loop; Telegram retries an update
it got no 200 for, and a retried press is applied once (:mod:`.presses`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from spanvisor.sink import AdminRoute

from .presses import Presses
from .settings import WEBHOOK_PATH

log = logging.getLogger("spanvisor.telegram")
# An update with a press is a few kB (the message it was on comes along).
MAX_BODY = 256 * 1024
HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookIntake:
    def __init__(self, secret: str, presses: Presses, loop: asyncio.AbstractEventLoop) -> None:
        self._secret = secret.encode()
        self.presses, self.loop = presses, loop
        self._quiet_until = 0.0  # no refusal logged again before

    def __repr__(self) -> str:  # holds the secret token: never shown
        return "WebhookIntake()"

    def routes(self) -> Sequence[AdminRoute]:
        return (("POST", WEBHOOK_PATH, self.update),)

    async def update(self, request: web.Request) -> web.Response:
        given = request.headers.get(HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            self.presses.stats.inc("telegram_presses_total", outcome="bad_secret")
            now = time.monotonic()
            if now >= self._quiet_until:  # whoever reaches the port must not fill the log
                self._quiet_until = now + 60.0
                log.warning("telegram: updates POSTed to %s without the secret token are refused", WEBHOOK_PATH)
            return web.Response(status=401, text="bad secret token\n")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="too large\n")
        # The whole body however it came over the wire (a read of N bytes
        # returns what is buffered); the app bounds it (client_max_size).
        body = await request.read()
        if len(body) > MAX_BODY:
            return web.Response(status=413, text="too large\n")
        try:
            doc: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("update_id"), int):
            return web.Response(status=400, text="not an update\n")
        query = doc.get("callback_query")
        if isinstance(query, dict):
            self.loop.call_soon_threadsafe(self.presses.take, query)
        return web.Response(status=200)
