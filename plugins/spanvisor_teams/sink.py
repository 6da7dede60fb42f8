"""TeamsSink: one Adaptive Card per task, edited in place, at the root of
its own thread in a Teams channel; its story as replies in the thread.

The engine is the shared :class:`~spanvisor.chat.live.LiveMessageSink`
(one worker per task, claims in the state store, folding, the newest view
shown). Here: what a Teams message is (an Adaptive Card, :mod:`.render`),
the Bot Connector calls that make a thread, reply in it and update its
card (:mod:`.api`), kept within Teams' limits (:mod:`.limits`), and the
presses on a card's buttons (:mod:`.intake`, serve's ``POST
/teams/messages``). The state store's namespaces are ``teams.parent``,
``teams.reply``, ``teams.shown`` and ``teams.buttons``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from spanvisor.chat.buttons import buttons
from spanvisor.chat.live import DEFERRED, LiveMessageSink, Posted, Rendered
from spanvisor.chat.pacing import Interrupt
from spanvisor.chat.record import TaskMessage
from spanvisor.config import Config, Setting
from spanvisor.display.thread import ThreadLine
from spanvisor.events import TaskView
from spanvisor.sink import AdminRoute, Clock, SinkContext

from .settings import LOGIN_URL, OPENID_URL, SERVICE_URL, SETTINGS, config_problem
from .settings import enabled as settings_enabled

log = logging.getLogger("spanvisor.teams")


@dataclass
class TeamsMessage(TaskMessage):
    thread: str | None = None  # the thread's conversation id: <channel>;messageid=<root>


class TeamsSink(LiveMessageSink):
    name = "teams"
    settings: ClassVar[Sequence[Setting]] = SETTINGS
    unrouted_detail = "no route matches and SPANVISOR_TEAMS_CHANNEL is unset"

    def __init__(self, clock: Clock | None = None) -> None:
        """``clock`` is for tests: a manual clock."""
        super().__init__(clock)
        self.connector: Any = None  # .api.Connector once started
        self.intake: Any = None  # .intake.Intake when people answer here

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        return [
            "spanvisor_teams.api",
            "spanvisor_teams.limits",
            "spanvisor_teams.render",
            "spanvisor_teams.intake",
            "spanvisor_teams.auth",
            "spanvisor.control.deciders",
            "aiohttp",
            "jwt",
        ]

    async def start(self, ctx: SinkContext) -> None:
        from spanvisor.chat.claims import Claims

        from .api import Connector
        from .limits import Poster, Rates

        await super().start(ctx)
        c = ctx.config
        app_id, password = c.get("teams_app_id"), c.get("teams_app_password")
        tenant, channel = str(c.get("teams_tenant") or "botframework.com"), c.get("teams_channel")
        urls = {
            "SPANVISOR_TEAMS_SERVICE_URL": str(c.get("teams_service_url") or SERVICE_URL),
            "SPANVISOR_TEAMS_LOGIN_URL": str(c.get("teams_login_url") or LOGIN_URL),
            "SPANVISOR_TEAMS_OPENID_URL": str(c.get("teams_openid_url") or OPENID_URL),
        }
        self.routes = tuple(c.get("teams_routes", ()))
        self._problem = config_problem(app_id, password, tenant, channel, urls, self.routes)
        if self._problem is not None:
            log.error("teams sink: %s; nothing is sent (see docs/guides/teams.md)", self._problem)
            return
        self.chat = str(channel) if channel else None
        self._interval = float(c.get("teams_update_interval_s", 5.0))
        self._thresholds = tuple(c.get("context_thresholds", (0.7, 0.85)))
        timeout = float(c.get("teams_timeout_s", 10.0))
        service = urls["SPANVISOR_TEAMS_SERVICE_URL"]
        self.connector = Connector(
            str(app_id), str(password), tenant, urls["SPANVISOR_TEAMS_LOGIN_URL"], service, timeout
        )
        rates = Rates(float(c.get("teams_thread_per_minute", 30.0)), float(c.get("teams_app_per_second", 50.0)))
        self.poster = Poster(self.connector, self._clock, ctx.stats, rates)
        owner = ctx.replica_id or f"teams-{uuid.uuid4().hex[:12]}"
        self.claims = Claims(
            ctx.state_store, owner, self._clock, ctx.stats, deadline=lambda: self._deadline, channel="teams"
        )
        if ctx.control is None:
            return
        from spanvisor.control.deciders import from_config

        people = from_config(c)
        if people is None or not any(p.teams_user for p in people.everyone()):
            # Buttons nobody may press would only refuse: the cards show the command instead.
            log.info("teams sink: SPANVISOR_DECIDERS names nobody by teams_user; no Approve buttons")
            return
        from .auth import Keys
        from .intake import Intake

        keys = Keys(urls["SPANVISOR_TEAMS_OPENID_URL"], timeout)
        self.intake = Intake(str(app_id), service, keys, self.claims, ctx.control, people, ctx.stats, self._show)

    # --- what a Teams message is ------------------------------------------------

    def _record(self, key: str, chat: str, view: TaskView) -> TeamsMessage:
        return TeamsMessage(key, chat, view)

    def _batch(self, lines: Sequence[ThreadLine]) -> list[ThreadLine]:
        from .render import next_batch

        return next_batch(lines)

    def _render(self, rec: TaskMessage) -> Rendered:
        """The task's card, its buttons on it (only for requests it shows whole)."""
        from .render import activity, parent, request_clipped, summary

        now_ns = rec.view.ended_ns or rec.view.updated_ns or time.time_ns()
        here = self.intake is not None
        card = parent(rec.view, now_ns, self._thresholds, answered_here=here)
        rows = buttons(rec.view, rec.chat, request_clipped, card.asks) if here else []
        if rows:
            card = parent(rec.view, now_ns, self._thresholds, answered_here=here, rows=rows)
        shown = activity(card.card, summary(rec.view))
        return Rendered(json.dumps(shown, sort_keys=True), shown, [b for _, row in rows for b in row])

    def _placed(self, rec: TaskMessage, value: dict[str, Any]) -> None:
        assert isinstance(rec, TeamsMessage)
        rec.message_id = str(value["message_id"])
        rec.chat = str(value.get("channel") or rec.chat)  # where it is, whatever the routes say now
        # The thread is always the channel's own: never a conversation the stored value names.
        rec.thread = f"{rec.chat};messageid={rec.message_id}"

    def _place(self, rec: TaskMessage) -> dict[str, Any]:
        assert isinstance(rec, TeamsMessage)
        return {"channel": rec.chat, "message_id": rec.message_id}

    async def _open(self, rec: TaskMessage, shown: Rendered, rank: int, interrupt: Interrupt | None) -> Posted | None:
        assert isinstance(rec, TeamsMessage)
        channel = rec.chat
        reply = await self.poster.send(
            "create",
            channel,  # Teams counts a new thread on its channel
            lambda: self.connector.create_thread(channel, shown.payload),
            rank=rank,
            key=rec.key,
            end=self._end,
            interrupt=interrupt,
        )
        posted = _posted(reply)
        if posted is not None and posted.ok:
            root = reply.body.get("activityId")
            if root is None:
                return Posted(False, status=reply.status, error="Teams said no id for the new thread")
            # A channel's thread is its root's id after the channel's (as Teams
            # answers it, and as Microsoft's SDK builds it): one form everywhere.
            rec.thread = f"{channel};messageid={root}"
            return Posted(True, str(root))
        return posted

    async def _send_reply(
        self, rec: TaskMessage, lines: list[ThreadLine], rank: int, interrupt: Interrupt | None
    ) -> Posted | None:
        from .render import activity, line_card

        assert isinstance(rec, TeamsMessage) and rec.thread is not None
        thread = rec.thread
        said = activity(line_card(lines), lines[0].summary)
        reply = await self.poster.send(
            "reply",
            thread,
            lambda: self.connector.send(thread, said),
            rank=rank,
            key=f"{rec.key}/{lines[0].reply_key}",
            end=self._end,
            interrupt=interrupt,
        )
        posted = _posted(reply)
        # Teams may answer 202 without an id: the reply is there all the same.
        return Posted(True, posted.id or "") if posted is not None and posted.ok else posted

    async def _send_edit(
        self, rec: TaskMessage, shown: Rendered, rank: int, interrupt: Interrupt | None
    ) -> Posted | None:
        assert isinstance(rec, TeamsMessage) and rec.thread is not None and rec.message_id is not None
        thread, root = rec.thread, rec.message_id
        reply = await self.poster.send(
            "update",
            thread,
            lambda: self.connector.update(thread, root, shown.payload),
            rank=rank,
            key=rec.key,
            end=self._end,
            interrupt=interrupt,
        )
        posted = _posted(reply)
        return Posted(True, root) if posted is not None and posted.ok else posted

    async def _show(self, thread: str, pieces: list[dict[str, Any]]) -> bool:
        """A request whole ('Show all'), as replies in its thread, the most urgent rank."""
        from spanvisor.chat.pacing import PERSON

        from .render import activity

        for card in pieces:
            said = activity(card, "The whole request")
            reply = await self.poster.send(
                "reply", thread, lambda said=said: self.connector.send(thread, said), rank=PERSON, end=self._end
            )
            if reply is None or not reply.ok:
                return False
        return True

    def admin_routes(self) -> Sequence[AdminRoute]:
        """``POST /teams/messages``: the bot's messaging endpoint, where presses come."""
        return self.intake.routes() if self.intake is not None else ()

    async def _stop_intake(self, timeout_s: float) -> None:
        if self.intake is not None:
            await self.intake.close()

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        from .check import run_check

        return await run_check(config)


def _posted(reply: Any) -> Posted | None:
    """A connector reply as the live message's engine reads it."""
    from .limits import DEFERRED as DEFERRED_CALL

    if reply is None:
        return None
    if reply is DEFERRED_CALL:
        return DEFERRED
    if not reply.ok:
        return Posted(False, status=reply.status, error=f"{reply.code}: {reply.error}".strip(": "))
    made = reply.body.get("id") if isinstance(reply.body, dict) else None
    return Posted(True, str(made) if made is not None else None)
