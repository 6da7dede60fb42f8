"""Slack's HTTP request URLs on ``spanvisor serve``'s admin port.

``POST /slack/interactions`` (buttons, the comment modal), ``POST
/slack/commands`` (``/spanvisor``) and, with agent sessions on, ``POST
/slack/events`` (the Events API: Slack's stop button on an agent session,
:mod:`.sessions`; its ``url_verification`` challenge is answered as Slack
asks). Each request's ``X-Slack-Signature`` is
checked with slack_sdk's :class:`SignatureVerifier` over the *raw* body,
before anything is parsed, and its ``X-Slack-Request-Timestamp`` must be
within 5 minutes: an unsigned, badly signed or stale request gets 401 and
changes nothing. A good one is answered 200 at once (Slack wants an answer
within 3 s) and its work is handed to the sink's loop (:class:`~.intake.Intake`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from spanvisor.sink import AdminRoute

from .intake import Intake

log = logging.getLogger("spanvisor.slack")
INTERACTIONS_PATH = "/slack/interactions"
COMMANDS_PATH = "/slack/commands"
EVENTS_PATH = "/slack/events"
# Slack's payloads are a few kB; a message's blocks come along with a click.
MAX_BODY = 512 * 1024


class HttpIntake:
    def __init__(self, signing_secret: str, intake: Intake, events: bool = False) -> None:
        from slack_sdk.signature import SignatureVerifier

        self._verifier = SignatureVerifier(signing_secret)
        self.intake = intake
        self.serves_events = events  # /slack/events: only with agent sessions on (.sessions)

    def __repr__(self) -> str:  # holds the signing secret: never shown
        return "HttpIntake()"

    def routes(self) -> Sequence[AdminRoute]:
        both: tuple[AdminRoute, ...] = (
            ("POST", INTERACTIONS_PATH, self.interactions),
            ("POST", COMMANDS_PATH, self.commands),
        )
        return (*both, ("POST", EVENTS_PATH, self.events)) if self.serves_events else both

    async def _form(self, request: web.Request) -> dict[str, str] | web.Response:
        """The verified form, or the response refusing the request."""
        body = await self._verified(request)
        if isinstance(body, web.Response):
            return body
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
        except (UnicodeDecodeError, ValueError):
            return web.Response(status=400, text="bad form\n")
        return {k: v[0] for k, v in form.items() if v}

    async def _verified(self, request: web.Request) -> bytes | web.Response:
        """The raw body once its signature holds, or the response refusing it."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="too large\n")
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY:
                return web.Response(status=413, text="too large\n")
            chunks.append(chunk)
        body = b"".join(chunks)
        ts = request.headers.get("X-Slack-Request-Timestamp")
        sig = request.headers.get("X-Slack-Signature")
        try:
            valid = self._verifier.is_valid(body, ts, sig)
        except (TypeError, ValueError):  # a timestamp that is not a number
            valid = False
        if not valid:
            self.intake.stats.inc("slack_interactions_total", outcome="bad_signature")
            log.warning("Slack request to %s refused: missing, bad or stale signature", request.path)
            return web.Response(status=401, text="invalid signature\n")
        return body

    async def interactions(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        try:
            payload: Any = json.loads(form.get("payload", ""))
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return web.Response(status=400, text="no payload\n")
        self.intake.submit("interactive", payload)
        # An empty 200: Slack closes the modal; answers follow ephemerally.
        return web.Response(status=200)

    async def commands(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        self.intake.submit("slash_commands", form)
        return web.Response(status=200)

    async def events(self, request: web.Request) -> web.Response:
        """An Events API delivery (JSON). Slack retries one it got no 200 for
        within 3 s; a retry carries the same ``event_id`` and is taken once
        (.intake)."""
        body = await self._verified(request)
        if isinstance(body, web.Response):
            return body
        try:
            doc: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            return web.Response(status=400, text="not a JSON object\n")
        if doc.get("type") == "url_verification":
            challenge = doc.get("challenge")
            if not isinstance(challenge, str) or len(challenge) > 1000:
                return web.Response(status=400, text="bad challenge\n")
            return web.json_response({"challenge": challenge})
        self.intake.submit("events_api", doc)
        return web.Response(status=200)


__all__ = ["COMMANDS_PATH", "EVENTS_PATH", "INTERACTIONS_PATH", "HttpIntake"]
