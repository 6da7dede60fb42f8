"""A fake of Slack's Socket Mode: ``apps.connections.open`` and the WebSocket.

As Slack documents it (docs.slack.dev, "Using Socket Mode"):

- ``apps.connections.open`` takes an app-level token (``xapp-…``; any other
  token answers ``not_allowed_token_type``) and answers a one-time ``url``
  (here ``ws://127.0.0.1:<port>/link/?ticket=…``); a ticket works once;
- on connect the server sends ``{"type": "hello", ...}``;
- :meth:`SocketMode.send` delivers one envelope ``{"envelope_id", "type",
  "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}``
  to **one** open connection; the client must answer ``{"envelope_id": …}``;
  an envelope not acked within :attr:`SocketMode.ack_timeout_s` is sent again
  with ``retry_attempt`` + 1 and ``retry_reason: "timeout"``, at most
  :attr:`SocketMode.max_retries` times.

Scenario by app token: ``xapp-lose-acks-<n>``: the first n acks of each
envelope are lost on the way (so Slack re-sends it).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .slack_methods import Answer, error, ok


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool = False
    sent: int = 0  # deliveries so far
    acked: bool = False
    lost_acks: int = 0
    acks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SocketMode:
    base_ws: str = ""  # ws://127.0.0.1:port (set when the server starts)
    ack_timeout_s: float = 1.0
    max_retries: int = 3
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    _tickets: dict[str, str] = field(default_factory=dict)  # ticket -> token
    refused: int = 0  # handshakes refused (token scenario xapp-refuse-N-…)
    _sockets: list[tuple[web.WebSocketResponse, str]] = field(default_factory=list)
    _retries: set[asyncio.Task[None]] = field(default_factory=set)

    def open(self, token: str) -> Answer:
        """``apps.connections.open``."""
        if not token.startswith("xapp-"):
            return error("not_allowed_token_type")
        ticket = uuid.uuid4().hex
        self._tickets[ticket] = token
        return ok(url=f"{self.base_ws}/link/?ticket={ticket}&app_id=A0SPANV")

    @property
    def connections(self) -> int:
        return sum(1 for ws, _ in self._sockets if not ws.closed)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = self._tickets.pop(request.query.get("ticket", ""), None)
        if token is None:
            return web.Response(status=401, text="invalid ticket")
        if token.startswith("xapp-refuse-") and self.refused < int(token.split("-")[2]):
            # xapp-refuse-N-…: the first N handshakes fail after the ticket is
            # spent (a URL that stopped working: the client must ask anew).
            self.refused += 1
            return web.Response(status=503, text="try another URL")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append((ws, token))
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": self.connections,
                    "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0SPANV"},
                }
            )
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(msg.data, token)
        finally:
            self._sockets = [(w, t) for w, t in self._sockets if w is not ws]
        return ws

    def _on_text(self, data: str, token: str) -> None:
        try:
            ack = json.loads(data)
        except ValueError:
            return
        env = self.envelopes.get(ack.get("envelope_id", "")) if isinstance(ack, dict) else None
        if env is None or env.acked:
            return
        scenario = token.partition("~")[0]
        if scenario.startswith("xapp-lose-acks-") and env.lost_acks < int(scenario.removeprefix("xapp-lose-acks-")):
            env.lost_acks += 1  # lost on the way: Slack never saw it
            return
        env.acked = True
        env.acks.append(ack)

    async def send(self, kind: str, payload: dict[str, Any], accepts_response_payload: bool = False) -> Envelope:
        """Deliver an envelope to one open connection (and re-send it until acked)."""
        env = Envelope(str(uuid.uuid4()), kind, payload, accepts_response_payload)
        self.envelopes[env.envelope_id] = env
        await self._deliver(env)
        task = asyncio.get_running_loop().create_task(self._retry(env))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)
        return env

    async def _deliver(self, env: Envelope) -> None:
        live = [ws for ws, _ in self._sockets if not ws.closed]
        if not live:
            raise RuntimeError("no Socket Mode connection is open")
        body: dict[str, Any] = {
            "envelope_id": env.envelope_id,
            "type": env.type,
            "payload": env.payload,
            "accepts_response_payload": env.accepts_response_payload,
        }
        if env.sent:
            body.update(retry_attempt=env.sent, retry_reason="timeout")
        else:
            body.update(retry_attempt=0, retry_reason="")
        env.sent += 1
        await live[0].send_str(json.dumps(body))

    async def _retry(self, env: Envelope) -> None:
        for _ in range(self.max_retries):
            await asyncio.sleep(self.ack_timeout_s)
            if env.acked:
                return
            try:
                await self._deliver(env)
            except (RuntimeError, ConnectionError):
                return

    async def close(self) -> None:
        for task in list(self._retries):
            task.cancel()
        for ws, _ in list(self._sockets):
            await ws.close()
