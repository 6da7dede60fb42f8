"""Socket Mode: Slack's interactions over a WebSocket the process opens.

No public URL is needed: with an app-level token (``xapp-…``, scope
``connections:write``) slack_sdk's aiohttp :class:`SocketModeClient` calls
``apps.connections.open`` (on the configured Web API base URL) and keeps the
connection up, reconnecting as Slack asks. Every envelope is acked first
(Slack re-sends an envelope that is not acked in time), then its payload is
handed to :class:`~.intake.Intake` on the sink's loop; a re-sent envelope is
the same payload, recorded once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .intake import Intake

log = logging.getLogger("spanvisor.slack")
KINDS = frozenset({"interactive", "slash_commands"})


class SocketIntake:
    def __init__(self, app_token: str, base_url: str | None, intake: Intake, ping_interval_s: float = 5.0) -> None:
        self._token = app_token
        self.base_url = base_url
        self.intake = intake
        self.ping_interval_s = ping_interval_s
        self.client: Any = None
        self._connecting: asyncio.Task[None] | None = None

    def __repr__(self) -> str:  # holds the app token: never shown
        return "SocketIntake()"

    async def start(self) -> None:
        """Start connecting in the background: a Slack that is away delays
        interactions, never the sink."""
        from slack_sdk.socket_mode.aiohttp import SocketModeClient
        from slack_sdk.web.async_client import AsyncWebClient

        web = AsyncWebClient(base_url=self.base_url) if self.base_url else AsyncWebClient()
        self.client = SocketModeClient(
            self._token,
            logger=logging.getLogger("spanvisor.slack.socket"),
            web_client=web,
            ping_interval=self.ping_interval_s,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        self._connecting = asyncio.get_running_loop().create_task(self._connect(), name="slack:socket-mode")

    async def _connect(self) -> None:
        try:
            await self.client.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client retries by itself; this is its last word
            log.warning("Slack Socket Mode could not connect: %s", type(exc).__name__)

    async def _on_request(self, client: Any, req: Any) -> None:
        from slack_sdk.socket_mode.response import SocketModeResponse

        # The ack goes first: the work may take longer than Slack waits.
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        if req.type in KINDS and isinstance(req.payload, dict):
            self.intake.submit(req.type, req.payload)

    async def connected(self) -> bool:
        return self.client is not None and bool(await self.client.is_connected())

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self.client is not None:
            try:
                await self.client.close()
            except Exception as exc:  # closing a broken connection
                log.debug("Slack Socket Mode close: %s", type(exc).__name__)


__all__ = ["SocketIntake"]
