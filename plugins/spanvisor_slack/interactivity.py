"""The Slack sink's way in: Socket Mode and/or HTTP, one intake behind both.

Built by :class:`~.sink.SlackSink` when ``SLACK_APP_TOKEN`` (Socket Mode) or
``SLACK_SIGNING_SECRET`` (HTTP request URLs on the admin port) is set; both
may be on at once. Runs on the sink's loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from spanvisor.chat.routes import home_channel
from spanvisor.control.deciders import Deciders, DecidersError
from spanvisor.control.deciders import from_config as deciders_of
from spanvisor.sink import AdminRoute, SinkContext

from .httpin import HttpIntake
from .intake import Intake
from .slash import SlashAnswers
from .socketmode import SocketIntake
from .webapi import Approvers, InteractApi

log = logging.getLogger("spanvisor.slack")


class Interactivity:
    def __init__(self, ctx: SinkContext, owner: str, namespace: str = "slack") -> None:
        c = ctx.config
        base_url = c.get("slack_base_url")
        self.api = InteractApi(c.get("slack_token"), base_url, c.get("slack_timeout_s", 10.0))
        self.approvers = Approvers(
            tuple(c.get("slack_approvers", ())),
            dict(c.get("slack_channel_approvers", {})),
            self.api,
            c.get("slack_group_ttl_s", 300.0),
        )
        routes, default = tuple(c.get("slack_routes", ())), c.get("slack_channel")
        self.slash = SlashAnswers(
            ctx.control,
            ctx.state_store,
            namespace,
            self.api,
            self.approvers,
            lambda v: home_channel(v, routes, default),
        )
        self.intake = Intake(
            ctx.control, ctx.state_store, self.api, self.approvers, ctx.stats, owner, self.slash, _people(ctx)
        )
        token, secret = c.get("slack_app_token"), c.get("slack_signing_secret")
        self.socket = SocketIntake(token, base_url, self.intake) if token else None
        self.http = HttpIntake(secret, self.intake, events=bool(c.get("slack_agent_sessions"))) if secret else None

    def __repr__(self) -> str:
        return f"Interactivity(socket_mode={self.socket is not None}, http={self.http is not None})"

    async def start(self) -> None:
        import asyncio

        self.intake.bind(asyncio.get_running_loop())
        if not self.approvers.configured:
            log.warning(
                "Slack interactivity is on without SPANVISOR_SLACK_APPROVERS: anyone who can see a task's "
                "message may approve, reject, cancel, retry or acknowledge it"
            )
        if self.socket is not None:
            await self.socket.start()

    def routes(self) -> Sequence[AdminRoute]:
        return self.http.routes() if self.http is not None else ()

    async def close(self, timeout_s: float) -> None:
        if self.socket is not None:
            await self.socket.close()
        await self.intake.drain(timeout_s)
        await self.api.close()


def _people(ctx: SinkContext) -> Deciders | None:
    """The people the deciders file names, to know them on Slack too (serve
    checked the file at start; elsewhere a bad one is said once here)."""
    try:
        return deciders_of(ctx.config)
    except DecidersError as exc:
        log.warning("Slack decisions are not matched to people: %s", exc)
        return None


__all__ = ["Interactivity"]
