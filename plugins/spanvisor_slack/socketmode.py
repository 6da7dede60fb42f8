"""Socket Mode: Slack's interactions over a WebSocket the process opens.

No public URL is needed: with an app-level token (``xapp-…``, scope
``connections:write``) slack_sdk's aiohttp :class:`SocketModeClient` calls
``apps.connections.open`` (on the configured Web API base URL) and keeps the
connection up, reconnecting as Slack asks. Every envelope is acked first
(Slack re-sends an envelope that is not acked in time), then its payload is
handed to :class:`~.intake.Intake` on the sink's loop; a re-sent envelope is
the same payload, recorded once.

While Slack is unreachable the client retries every ping interval and logs
each failure, often with a full traceback. A watcher here logs one line when
the connection drops and one when it is back; the client's own logger (one
per :class:`SocketIntake`, named ``spanvisor.slack.socket``) carries a
:class:`ReconnectNoise` filter that lets the first warning or error of an
outage through as it is (it may be a real error: a revoked token) and counts
the rest, which the "back" line reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from spanvisor.display.readable import duration

from .intake import Intake

log = logging.getLogger("spanvisor.slack")
KINDS = frozenset({"interactive", "slash_commands", "events_api"})
CLIENT_LOGGER = "spanvisor.slack.socket"
REMIND_S = 300.0  # a long outage is mentioned again this often
# Down this long, the client is made to ask for a new WebSocket URL (at most
# this often: apps.connections.open is rate limited).
FRESH_URL_S = 30.0


class ReconnectNoise(logging.Filter):
    """Quiets a Socket Mode client while its connection is down.

    From the moment ``is_down()`` holds until :meth:`end` is called (the
    connection is back), the first record at WARNING or above passes
    unchanged, later ones are counted in :attr:`suppressed` and dropped, and
    so are the client's info and debug lines ("Reconnecting...")."""

    def __init__(self, is_down: Callable[[], bool]) -> None:
        super().__init__()
        self.is_down = is_down
        self.outage = False
        self.first_passed = False
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.outage:
            if not self.is_down():
                return True
            self.outage = True
        if record.levelno < logging.WARNING:
            return False
        if not self.first_passed:
            self.first_passed = True
            return True
        self.suppressed += 1
        return False

    def end(self) -> int:
        """The connection is back: log normally again. Returns how many
        warnings and errors were dropped during the outage."""
        n = self.suppressed
        self.outage, self.first_passed, self.suppressed = False, False, 0
        return n


class _ClientLogger(logging.Logger):
    """A logger outside logging's registry. Such a logger's level cache is
    never cleared when levels change at run time, so it does not cache."""

    def isEnabledFor(self, level: int) -> bool:
        return not self.disabled and level > self.manager.disable and level >= self.getEffectiveLevel()


def _not_logged(n: int) -> str:
    return f"{n} reconnect error{'s' if n != 1 else ''} not logged"


class SocketIntake:
    def __init__(
        self,
        app_token: str,
        base_url: str | None,
        intake: Intake,
        ping_interval_s: float = 5.0,
        watch_s: float | None = None,
        fresh_url_s: float = FRESH_URL_S,
    ) -> None:
        self._token = app_token
        self.fresh_url_s = fresh_url_s
        self.base_url = base_url
        self.intake = intake
        self.ping_interval_s = ping_interval_s
        # How often the watcher looks at the connection: a drop shorter than
        # this may go unmentioned (the client reconnects by itself anyway).
        self.watch_s = min(1.0, ping_interval_s) if watch_s is None else watch_s
        self.client: Any = None
        self._connecting: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self.noise = ReconnectNoise(self._down_now)
        # This client's own logger, not registered by name: its filter
        # counts only this client's records. Levels and handlers are those
        # of the registered ``spanvisor.slack.socket`` logger (its parent).
        self.logger: logging.Logger = _ClientLogger(CLIENT_LOGGER)
        self.logger.parent = logging.getLogger(CLIENT_LOGGER)
        self.logger.addFilter(self.noise)

    def __repr__(self) -> str:  # holds the app token: never shown
        return "SocketIntake()"

    async def start(self) -> None:
        """Start connecting in the background: a Slack that is away delays
        interactions, never the sink."""
        from slack_sdk.socket_mode.aiohttp import SocketModeClient
        from slack_sdk.web.async_client import AsyncWebClient

        # The Web API client logs each failed apps.connections.open: the same filter.
        web = AsyncWebClient(base_url=self.base_url, logger=self.logger) if self.base_url else None
        self.client = SocketModeClient(
            self._token,
            logger=self.logger,
            web_client=web or AsyncWebClient(logger=self.logger),
            ping_interval=self.ping_interval_s,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_task(self._connect(), name="slack:socket-mode")
        self._watching = loop.create_task(self._watch(), name="slack:socket-mode-watch")

    def _down_now(self) -> bool:
        """The client's state, read without awaiting (for the log filter)."""
        c = self.client
        if c is None:
            return True
        session = getattr(c, "current_session", None)
        return bool(getattr(c, "stale", False)) or session is None or bool(session.closed)

    async def _connect(self) -> None:
        try:
            await self.client.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client retries by itself; this is its last word
            log.warning("Slack Socket Mode could not connect: %s", type(exc).__name__)

    async def _watch(self) -> None:
        """One line when the connection drops, one when it is back."""
        up, ever = False, False
        since = reminded = fresh = time.monotonic()
        while True:
            await asyncio.sleep(self.watch_s)
            try:
                now_up = bool(await self.client.is_connected())
            except Exception:  # a client in the middle of reconnecting
                now_up = False
            now = time.monotonic()
            if now_up and not up:
                n = self.noise.end()
                if not ever:
                    extra = f" after {duration(now - since)} ({_not_logged(n)})" if n else ""
                    log.info("Slack Socket Mode connected%s", extra)
                else:
                    log.warning(
                        "Slack Socket Mode connection is back after %s (%s)", duration(now - since), _not_logged(n)
                    )
                ever = True
            elif up and not now_up:
                since = reminded = now
                log.warning(
                    "Slack Socket Mode connection lost: reconnecting in the background; "
                    "clicks and commands wait until it is back"
                )
            elif not now_up and now - reminded >= REMIND_S:
                reminded = now
                log.warning(
                    "Slack Socket Mode still not connected after %s (%d reconnect errors so far)",
                    duration(now - since),
                    self.noise.suppressed,
                )
            if now_up:
                fresh = now
            elif now - fresh >= self.fresh_url_s:
                # slack_sdk retries the WebSocket URL it has until it connects,
                # and asks apps.connections.open for a new one only when it has
                # none: a URL that stopped working (they are single use) would
                # keep it away for ever. Dropping it makes the next retry ask.
                fresh = now
                self.client.wss_uri = None
            up = now_up

    async def _on_request(self, client: Any, req: Any) -> None:
        from slack_sdk.socket_mode.response import SocketModeResponse

        # The ack goes first: the work may take longer than Slack waits.
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        if req.type in KINDS and isinstance(req.payload, dict):
            self.intake.submit(req.type, req.payload)

    async def connected(self) -> bool:
        return self.client is not None and bool(await self.client.is_connected())

    async def close(self) -> None:
        for task in (self._watching, self._connecting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.client is not None:
            try:
                await self.client.close()
            except Exception as exc:  # closing a broken connection
                log.debug("Slack Socket Mode close: %s", type(exc).__name__)


__all__ = ["ReconnectNoise", "SocketIntake"]
