"""TelegramSink: one message per task edited in place, its story as replies.

The engine is the shared :class:`~spanvisor.chat.live.LiveMessageSink`
(one worker per task, claims in the state store, folding, the newest view
shown). Here: what a Telegram message is (HTML text and an inline
keyboard), the calls that make, reply to and edit it, a forum topic per
task in a forum chat, and the presses (:mod:`.presses`, :mod:`.webhook`).
The state store's namespaces are ``telegram.parent``, ``telegram.reply``,
``telegram.shown``, ``telegram.buttons`` and ``telegram.topic``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from spanvisor.chat.buttons import buttons
from spanvisor.chat.live import DEFERRED, LiveMessageSink, Posted, Rendered
from spanvisor.chat.pacing import Interrupt
from spanvisor.chat.record import TaskMessage
from spanvisor.config import Config, Setting
from spanvisor.display.thread import ThreadLine
from spanvisor.events import TaskView
from spanvisor.sink import AdminRoute, Clock, SinkContext

from .api import BotReply
from .buttons import keyboard
from .limits import DEFERRED as DEFERRED_CALL
from .limits import NOT_MODIFIED
from .record import TelegramMessage, next_batch
from .render import topic_name
from .settings import API, SETTINGS, config_problem
from .settings import enabled as settings_enabled

log = logging.getLogger("spanvisor.telegram")
TOPICS = "telegram.topic"  # each task's forum topic, once made


class TelegramSink(LiveMessageSink):
    name = "telegram"
    settings: ClassVar[Sequence[Setting]] = SETTINGS
    unrouted_detail = "no route matches and SPANVISOR_TELEGRAM_CHAT is unset"

    def __init__(self, clock: Clock | None = None) -> None:
        """``clock`` is for tests: a manual clock."""
        super().__init__(clock)
        self.presses: Any = None  # .presses.Presses when people answer here
        self.chats: Any = None  # .chats.Chats once started
        self._poller: asyncio.Task[None] | None = None
        self.webhook: Any = None  # .webhook.WebhookIntake with SPANVISOR_TELEGRAM_UPDATES=webhook

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    def imports(self, config: Config) -> Sequence[str]:
        names = ["spanvisor_telegram.limits", "spanvisor_telegram.api", "spanvisor_telegram.render", "aiohttp"]
        mode = config.get("telegram_updates", "poll")
        if mode != "off":
            names += ["spanvisor_telegram.presses", "spanvisor.control.deciders"]
            names += ["spanvisor_telegram.whole", "spanvisor.control.runs", "spanvisor.display.approval"]
        if mode == "webhook":
            names += ["spanvisor_telegram.webhook"]
        return names

    async def start(self, ctx: SinkContext) -> None:
        from spanvisor.chat.claims import Claims

        from .api import BotApi
        from .chats import Chats
        from .limits import Poster, Rates

        await super().start(ctx)
        c = ctx.config
        token, chat = c.get("telegram_token"), c.get("telegram_chat")
        base = str(c.get("telegram_base_url") or API)
        self.routes = tuple(c.get("telegram_routes", ()))
        self._problem = config_problem(token, chat, base, self.routes)
        if self._problem is not None:
            log.error("telegram sink: %s; nothing is sent (see docs/guides/telegram.md)", self._problem)
            return
        self.chat = str(chat) if chat else None
        self._interval = float(c.get("telegram_update_interval_s", 5.0))
        self._thresholds = tuple(c.get("context_thresholds", (0.7, 0.85)))
        rates = Rates(
            float(c.get("telegram_chat_per_minute", 60.0)),
            float(c.get("telegram_group_per_minute", 20.0)),
            float(c.get("telegram_global_per_second", 30.0)),
        )
        api = BotApi(str(token), base, float(c.get("telegram_timeout_s", 10.0)))
        self.poster = Poster(api, self._clock, rates, ctx.stats)
        self.chats = Chats(api, bool(c.get("telegram_topics", True)))
        owner = ctx.replica_id or f"telegram-{uuid.uuid4().hex[:12]}"
        self.claims = Claims(
            ctx.state_store, owner, self._clock, ctx.stats, deadline=lambda: self._deadline, channel="telegram"
        )
        mode = c.get("telegram_updates", "poll")
        if mode != "off" and ctx.control is not None:
            from spanvisor.control.deciders import from_config

            from .presses import POLL_S, Presses

            # Its own client: a long poll holds its connection POLL_S seconds.
            polling = BotApi(str(token), base, POLL_S + float(c.get("telegram_timeout_s", 10.0)))
            people = from_config(c)
            if people is None or not any(p.telegram_user for p in people.everyone()):
                # Buttons nobody may press would only refuse: the messages show the command instead.
                log.info("telegram sink: SPANVISOR_DECIDERS names nobody by telegram_user; no Approve buttons")
                return
            from .whole import WholeAction

            whole = WholeAction(self.poster, self.claims, ctx.control, self._end)
            self.presses = Presses(polling, self.claims, ctx.control, people, ctx.stats, whole.show)
            if mode == "poll":
                self._poller = asyncio.get_running_loop().create_task(
                    self.presses.run(), name="spanvisor-telegram-poll"
                )
            else:
                await self._webhook(c, polling)

    # --- what a Telegram message is --------------------------------------------

    def _record(self, key: str, chat: str, view: TaskView) -> TelegramMessage:
        return TelegramMessage(key, chat, view)

    def _batch(self, lines: Sequence[ThreadLine]) -> list[ThreadLine]:
        return next_batch(lines)

    def _render(self, rec: TaskMessage) -> Rendered:
        """The message's text and keyboard, and the buttons on it."""
        from .render import parent, request_clipped

        now_ns = rec.view.ended_ns or rec.view.updated_ns or time.time_ns()
        card = parent(rec.view, now_ns, self._thresholds, answered_here=self.presses is not None)
        rows = buttons(rec.view, rec.chat, request_clipped, card.asks) if self.presses is not None else []
        markup = keyboard(rows)
        return Rendered(
            card.text + "\0" + json.dumps(markup, sort_keys=True),
            (card.text, markup),
            [b for _, row in rows for b in row],
        )

    def _placed(self, rec: TaskMessage, value: dict[str, Any]) -> None:
        assert isinstance(rec, TelegramMessage)
        rec.message_id = str(value["message_id"])
        rec.chat = str(value.get("chat") or rec.chat)  # where it is, whatever the routes say now
        topic = value.get("topic")
        rec.topic = topic if isinstance(topic, int) else None

    def _place(self, rec: TaskMessage) -> dict[str, Any]:
        assert isinstance(rec, TelegramMessage) and rec.message_id is not None
        return {"chat": rec.chat, "message_id": int(rec.message_id), "topic": rec.topic}

    async def _ours(self, chat: str) -> bool:
        """A chat the settings name, in any spelling (an @username, or its id as Telegram gives it)."""
        named = self._chats()
        return chat in named or chat in {await self.chats.resolved(c) for c in named}

    async def _prepare(self, rec: TaskMessage) -> Posted | None:
        """The chat's id (a @username resolved) and, in a forum, the task's own topic."""
        assert isinstance(rec, TelegramMessage)
        rec.chat = await self.chats.resolved(rec.chat)
        if not await self.chats.is_forum(rec.chat):
            return Posted(True)
        # A topic made before a crash (or a refusal) that kept its message from
        # being sent is the task's still: never a second, empty one.
        made = await self.claims.get(TOPICS, rec.key)
        if made is not None and made.get("chat") == rec.chat and isinstance(made.get("topic"), int):
            rec.topic = made["topic"]
            return Posted(True)
        topic = await self.poster.send(
            "createForumTopic", rec.chat, {"name": topic_name(rec.view)}, rank=self._rank(rec), end=self._end
        )
        if topic is None or not topic.ok:
            return _answer(topic)
        rec.topic = int(topic.result["message_thread_id"])
        await self.claims.put(TOPICS, rec.key, {"chat": rec.chat, "topic": rec.topic})
        return Posted(True)

    def _where(self, rec: TaskMessage) -> dict[str, Any]:
        """In a forum chat: the task's own topic."""
        assert isinstance(rec, TelegramMessage)
        return {"message_thread_id": rec.topic} if rec.topic is not None else {}

    async def _open(self, rec: TaskMessage, shown: Rendered, rank: int, interrupt: Interrupt | None) -> Posted | None:
        text, markup = shown.payload
        args: dict[str, Any] = {"text": text, "parse_mode": "HTML", **self._where(rec)}
        if markup is not None:
            args["reply_markup"] = markup
        reply = await self.poster.send(
            "sendMessage", rec.chat, args, rank=rank, key=rec.key, end=self._end, interrupt=interrupt
        )
        return _answer(reply)

    async def _send_reply(
        self, rec: TaskMessage, lines: list[ThreadLine], rank: int, interrupt: Interrupt | None
    ) -> Posted | None:
        from .render import line

        assert rec.message_id is not None
        args = {
            "text": "\n".join(line(item) for item in lines),
            "parse_mode": "HTML",
            **self._where(rec),
            "reply_parameters": {"message_id": int(rec.message_id), "allow_sending_without_reply": True},
        }
        key = f"{rec.key}/{lines[0].reply_key}"
        reply = await self.poster.send(
            "sendMessage", rec.chat, args, rank=rank, key=key, end=self._end, interrupt=interrupt
        )
        return _answer(reply)

    async def _send_edit(
        self, rec: TaskMessage, shown: Rendered, rank: int, interrupt: Interrupt | None
    ) -> Posted | None:
        assert rec.message_id is not None
        text, markup = shown.payload
        args: dict[str, Any] = {"message_id": int(rec.message_id), "text": text, "parse_mode": "HTML"}
        if markup is not None:
            args["reply_markup"] = markup  # none: Telegram takes the keyboard away
        reply = await self.poster.send(
            "editMessageText", rec.chat, args, rank=rank, key=rec.key, end=self._end, interrupt=interrupt
        )
        # "Not modified": the message already says this (a replay, another replica's edit).
        if reply is not None and reply is not DEFERRED_CALL and NOT_MODIFIED in reply.error:
            return Posted(True, rec.message_id)
        return _answer(reply)

    async def _webhook(self, c: Config, api: Any) -> None:
        """Tell Telegram where to POST presses; the admin route takes them from then on."""
        from .settings import webhook_problem
        from .webhook import WebhookIntake

        url, secret = c.get("telegram_webhook_url"), c.get("telegram_webhook_secret")
        problem = webhook_problem(url, secret)
        if problem is not None:
            self.presses = None  # no buttons: nobody could press them
            log.error("telegram sink: %s; presses are not taken (the messages show the command)", problem)
            return
        reply = await api.call(
            "setWebhook", {"url": url, "secret_token": secret, "allowed_updates": ["callback_query"]}
        )
        if not reply.ok:
            log.error("telegram sink: setWebhook failed (%s); presses wait until it is set", reply.error)
        self.webhook = WebhookIntake(str(secret), self.presses, asyncio.get_running_loop())

    def admin_routes(self) -> Sequence[AdminRoute]:
        """``POST /telegram/updates`` with SPANVISOR_TELEGRAM_UPDATES=webhook."""
        return self.webhook.routes() if self.webhook is not None else ()

    # --- shutdown ----------------------------------------------------------------

    async def _stop_intake(self, timeout_s: float) -> None:
        if self.presses is None:
            return
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            from .presses import POLLER

            try:  # the next replica polls at once, not when the lease lapses
                await asyncio.wait_for(self.claims.release(POLLER, "poller"), timeout_s * 0.1)
            except Exception:
                log.debug("telegram: the poller's lease was not released")
        await self.presses.drain(timeout_s * 0.2)
        await self.presses.api.close()

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        from .check import run_check

        return await run_check(config)


def _answer(reply: BotReply | None) -> Posted | None:
    """A Bot API reply as the live message's engine reads it."""
    if reply is None:
        return None
    if reply is DEFERRED_CALL:
        return DEFERRED
    if not reply.ok:
        return Posted(False, status=reply.status, error=reply.error)
    made = reply.result.get("message_id") if isinstance(reply.result, dict) else None
    return Posted(True, str(made) if made is not None else None)
