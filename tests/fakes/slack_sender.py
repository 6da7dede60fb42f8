"""Slack's side of the HTTP request URLs: signed form posts to our endpoints.

Signs as Slack documents it ("Verifying requests from Slack"): header
``X-Slack-Request-Timestamp`` (Unix seconds) and ``X-Slack-Signature`` =
``v0=`` + hex HMAC-SHA256 with the signing secret over
``v0:{timestamp}:{raw body}``. Interactions are posted as one form field
``payload`` (JSON), slash commands as plain form fields; both
``application/x-www-form-urlencoded``. Computed here with hmac, not with
slack_sdk, so the check on our side is tested against an independent signer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp


@dataclass(frozen=True)
class Sent:
    status: int
    text: str
    seconds: float  # how long our endpoint took to answer


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SignedSender:
    """Posts to ``base`` (e.g. ``http://127.0.0.1:9464``) + ``/slack/...``."""

    def __init__(self, base: str, secret: str) -> None:
        self.base, self.secret = base.rstrip("/"), secret

    async def post(
        self,
        path: str,
        fields: Mapping[str, str],
        *,
        age_s: float = 0.0,
        tamper: bool = False,
        secret: str | None = None,
        signed: bool = True,
    ) -> Sent:
        """``tamper``: the body changes after signing; ``age_s``: a timestamp
        that old; ``secret``: sign with another secret; ``signed=False``: no
        signature headers."""
        body = urlencode(fields).encode()
        ts = str(int(time.time() - age_s))
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signed:
            headers.update(
                {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(secret or self.secret, ts, body)}
            )
        if tamper:
            body = body.replace(b"approve", b"reject") if b"approve" in body else body + b"&x=1"
        start = time.monotonic()
        async with aiohttp.ClientSession() as session:
            async with session.post(self.base + path, data=body, headers=headers) as resp:
                return Sent(resp.status, await resp.text(), time.monotonic() - start)

    async def interaction(self, payload: Mapping[str, Any], **kw: Any) -> Sent:
        return await self.post("/slack/interactions", {"payload": json.dumps(payload)}, **kw)

    async def command(self, fields: Mapping[str, str], **kw: Any) -> Sent:
        return await self.post("/slack/commands", fields, **kw)

    async def event(self, envelope: Mapping[str, Any], *, retry: int = 0, signed: bool = True) -> Sent:
        """An Events API delivery: JSON, signed over the raw body like a form;
        ``retry``: Slack's retry number (``X-Slack-Retry-Num``) of the same delivery."""
        body = json.dumps(envelope).encode()
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json"}
        if signed:
            headers.update({"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(self.secret, ts, body)})
        if retry:
            headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
        start = time.monotonic()
        async with aiohttp.ClientSession() as session:
            async with session.post(self.base + "/slack/events", data=body, headers=headers) as resp:
                return Sent(resp.status, await resp.text(), time.monotonic() - start)
