"""TelegramSink: one message per task edited in place, its story as replies.

``export`` never waits on Telegram: it folds each event into the task's
record (the newest view by ``TaskView.seq``, the thread lines owed) and
wakes the task's worker. Each task has one worker, so its message comes
before its replies and the replies keep their order; the workers of all
tasks share the chat's limits (:mod:`.limits`), the most urgent call first.

Nothing doubled across restarts and replicas: the task's message is
claimed in the state store before it is sent and its id stored after
(``telegram.parent``), each reply likewise (``telegram.reply``), so a
restarted process or another replica edits the same message and never
posts a line twice. A routine edit waits ``telegram_update_interval_s``
after the last one and is built from the newest view when its turn
comes, so many changes between two edits are one edit; a status change,
a question for a person and the end are edited at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

from spanvisor.chat.pacing import PERSON, ROUTINE, URGENT, Interrupt
from spanvisor.chat.routes import Route, home_channel
from spanvisor.config import Config, Setting
from spanvisor.display.thread import ThreadLine, ThreadPolicy
from spanvisor.events import Event, HumanIntervention
from spanvisor.sink import AdminRoute, BaseSink, Clock, MonotonicClock, SinkContext, SinkResult

from .buttons import NAMESPACE as BUTTONS
from .buttons import Button, buttons, keyboard
from .limits import DEFERRED, NOT_MODIFIED
from .record import MAX_PENDING_LINES, REPLIES, TaskMessage, is_final, next_batch, parent_key
from .render import topic_name
from .settings import API, SETTINGS, config_problem

log = logging.getLogger("spanvisor.telegram")
MAX_OPEN_TASKS = 10_000
PARENTS = "telegram.parent"
KEPT_MAX = 10_000  # buttons known to be in the store already
# The newest view a task's message shows, by version (final first, then seq):
# an event replayed after a restart never moves the message back.
SHOWN = "telegram.shown"
FINAL_BIT = 1 << 48


class TelegramSink(BaseSink):
    name = "telegram"
    settings: ClassVar[Sequence[Setting]] = SETTINGS

    def __init__(self, clock: Clock | None = None) -> None:
        """``clock`` is for tests: a manual clock."""
        super().__init__()
        self._clock: Clock = clock or MonotonicClock()
        self._tasks: dict[str, TaskMessage] = {}
        self._problem: str | None = "not started"
        self._flushing = 0
        self._deadline: float | None = None
        self._interval = 5.0
        self._thresholds: tuple[float, ...] = (0.7, 0.85)
        self.policy = ThreadPolicy()
        self.poster: Any = None  # .limits.Poster once started
        self.claims: Any = None  # spanvisor.chat.claims.Claims once started
        self.presses: Any = None  # .presses.Presses when people answer here
        self._kept: OrderedDict[str, None] = OrderedDict()
        self._unrouted: OrderedDict[str, None] = OrderedDict()  # tasks counted as unrouted once
        self.chats: Any = None  # .chats.Chats once started
        self._closed = False  # shut down: a second shutdown does nothing
        self._poller: asyncio.Task[None] | None = None
        self.webhook: Any = None  # .webhook.WebhookIntake with SPANVISOR_TELEGRAM_UPDATES=webhook
        self.chat: str | None = None  # where tasks no route names go
        self.routes: tuple[Route, ...] = ()

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return bool(config.get("telegram_token"))

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

    # --- export: fold, wake, return -------------------------------------------

    async def export(self, events: Sequence[Event]) -> SinkResult:
        if self.ctx is None:
            return SinkResult.SUCCESS
        if self._problem is not None:
            self.ctx.stats.drop("telegram_not_configured", len(events), sink=self.name, detail=self._problem)
            return SinkResult.SUCCESS
        for event in events:
            self._fold(event)
        return SinkResult.SUCCESS

    def _fold(self, event: Event) -> None:
        assert self.ctx is not None
        view = event.task
        key = parent_key(view)
        rec = self._tasks.get(key)
        if rec is None:
            if len(self._tasks) >= MAX_OPEN_TASKS:
                self.ctx.stats.drop("telegram_too_many_tasks", 1, sink=self.name, detail=f"{MAX_OPEN_TASKS} tasks open")
                return
            bare = isinstance(event, HumanIntervention) and not event.known
            # A decision's bare view names no agent or repo to route by: its
            # task's message, wherever it is, is found in the state store.
            chat = "" if bare else home_channel(view, self.routes, self.chat)
            if chat is None:
                self._unrouted_once(key)
                return
            rec = self._tasks[key] = TaskMessage(key, chat, view)
            rec.known = False
        # A decision on a task this process does not track says nothing of its state.
        if not (isinstance(event, HumanIntervention) and not event.known):
            if view.seq >= rec.view.seq or not rec.known:
                rec.view = view
            rec.known = True
        rec.final = rec.final or is_final(event)
        for item in self.policy.lines(event):
            if len(rec.lines) >= MAX_PENDING_LINES:
                self.ctx.stats.drop("telegram_lines_full", 1, sink=self.name, detail=f"{MAX_PENDING_LINES} lines wait")
                continue
            rec.lines.append(item)
        rec.wake.set()
        rec.changed.set()
        if rec.worker is None:
            rec.worker = asyncio.get_running_loop().create_task(self._work(rec), name="spanvisor-telegram-task")

    # --- a task's worker ------------------------------------------------------

    def _end(self) -> float | None:
        return self._deadline

    async def _work(self, rec: TaskMessage) -> None:
        try:
            while not rec.dead:
                if not rec.lines and not self._wants_edit(rec):
                    if rec.final:
                        break
                    rec.wake.clear()
                    await rec.wake.wait()
                    continue
                if rec.message_id is None and not await self._parent(rec):
                    return
                # A new question or failure shows on the message before the story catches up.
                if self._rank(rec) == PERSON and self._wants_edit(rec) and await self._edit(rec) is False:
                    return
                while rec.lines and not rec.dead:
                    batch = next_batch(rec.lines)
                    posted = await self._reply(rec, batch)
                    if posted is None:  # a question came while it waited: it goes first
                        break
                    if not posted:
                        return
                    for _ in batch:
                        rec.lines.popleft()
                if self._wants_edit(rec):
                    due = self._due(rec)
                    if due > self._clock.now():
                        rec.wake.clear()
                        await _wait(rec.wake, self._clock, due - self._clock.now())
                        continue
                    if await self._edit(rec) is False:
                        return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("telegram sink: task %s stopped on a bug; its updates are dropped", rec.view.task_id)
        finally:
            rec.worker = None
            if self._tasks.get(rec.key) is rec and (
                rec.dead or (rec.final and not rec.lines and not self._wants_edit(rec))
            ):
                del self._tasks[rec.key]

    def _message(self, rec: TaskMessage) -> tuple[str, dict[str, Any] | None, list[Button]]:
        """The message's text, its keyboard, and the buttons on it."""
        from .render import parent, request_clipped

        now_ns = rec.view.ended_ns or rec.view.updated_ns or time.time_ns()
        card = parent(rec.view, now_ns, self._thresholds, answered_here=self.presses is not None)
        rows = buttons(rec.view, rec.chat, request_clipped, card.asks) if self.presses is not None else []
        return card.text, keyboard(rows), [b for _, row in rows for b in row]

    def _shown(self, rec: TaskMessage) -> tuple[str, str]:
        text, markup, _ = self._message(rec)
        return text, json.dumps(markup, sort_keys=True)

    def _wants_edit(self, rec: TaskMessage) -> bool:
        return rec.message_id is None or (rec.known and rec.shown != self._shown(rec))

    def _rank(self, rec: TaskMessage) -> int:
        """A new question or a new failure first; then a status change; then routine."""
        asks = tuple(a.approval_id for a in rec.view.approvals)
        failed = rec.view.status == "error" and rec.shown_status != "error"
        if (asks and asks != rec.shown_asks) or failed:
            return PERSON
        if rec.final or rec.view.status != rec.shown_status or asks != rec.shown_asks:
            return URGENT
        return ROUTINE

    def _mark_shown(self, rec: TaskMessage, shown: tuple[str, str]) -> None:
        rec.shown, rec.shown_status = shown, rec.view.status
        rec.shown_asks = tuple(a.approval_id for a in rec.view.approvals)
        rec.edited_at = self._clock.now()

    async def _keep(self, pressable: list[Button]) -> None:
        """What each button stands for, in the state store before a message shows it."""
        for button in pressable:
            if button.token not in self._kept:
                await self.claims.put(BUTTONS, button.token, button.stored())
                self._kept[button.token] = None
                while len(self._kept) > KEPT_MAX:
                    self._kept.popitem(last=False)

    def _due(self, rec: TaskMessage) -> float:
        if self._flushing or self._rank(rec) != ROUTINE:
            return self._clock.now()
        return rec.edited_at + self._interval

    async def _parent(self, rec: TaskMessage) -> bool:
        """The task's message: found in the state store, or sent and stored."""
        while True:
            claim = await self.claims.claim(PARENTS, rec.key)
            if claim.value is not None:
                rec.message_id = int(claim.value["message_id"])
                rec.chat = str(claim.value.get("chat") or rec.chat)  # where it is, whatever the routes say now
                topic = claim.value.get("topic")
                rec.topic = topic if isinstance(topic, int) else None
                if not rec.known:  # a decision's ids only: the message keeps what it shows
                    rec.shown = self._shown(rec)
                return True
            if claim.won:
                break
            await self._clock.sleep(0.5)  # another replica is sending it: its id comes soon
            if self._deadline is not None and self._clock.now() >= self._deadline:
                return False
        if not rec.chat:  # a decision on a task no chat takes, and no message of it anywhere
            await self.claims.release(PARENTS, rec.key)
            rec.dead = True
            self._unrouted_once(rec.key)
            return False
        rec.chat = await self.chats.resolved(rec.chat)
        if await self.chats.is_forum(rec.chat):
            topic = await self.poster.send(
                "createForumTopic", rec.chat, {"name": topic_name(rec.view)}, rank=self._rank(rec), end=self._end
            )
            if topic is None or not topic.ok:
                await self.claims.release(PARENTS, rec.key)
                self._give_up(rec, topic)
                return False
            rec.topic = int(topic.result["message_thread_id"])
        while True:  # sent again, as it then reads, when a question comes while it waits
            text, markup, pressable = self._message(rec)
            await self._keep(pressable)
            args: dict[str, Any] = {"text": text, "parse_mode": "HTML", **self._where(rec)}
            if markup is not None:
                args["reply_markup"] = markup
            rank = self._rank(rec)
            # A busy group's queue can outlast the claim's lease: it is renewed while the call waits.
            async with self.claims.lease(PARENTS, [rec.key]):
                answer = await self.poster.send(
                    "sendMessage",
                    rec.chat,
                    args,
                    rank=rank,
                    key=rec.key,
                    end=self._end,
                    interrupt=self._interrupt(rec, rank),
                )
            if answer is not DEFERRED:
                break
        if answer is None or not answer.ok:
            await self.claims.release(PARENTS, rec.key)
            self._give_up(rec, answer)
            return False
        rec.message_id = int(answer.result["message_id"])
        self._mark_shown(rec, (text, json.dumps(markup, sort_keys=True)))
        await self.claims.settle(PARENTS, rec.key, {"chat": rec.chat, "message_id": rec.message_id, "topic": rec.topic})
        await self._newest(rec)
        return True

    def _where(self, rec: TaskMessage) -> dict[str, Any]:
        """In a forum chat: the task's own topic."""
        return {"message_thread_id": rec.topic} if rec.topic is not None else {}

    def _unrouted_once(self, key: str) -> None:
        if key not in self._unrouted and self.ctx is not None:
            self._unrouted[key] = None
            if len(self._unrouted) > MAX_OPEN_TASKS:
                self._unrouted.popitem(last=False)
            self.ctx.stats.drop(
                "telegram_unrouted", 1, sink=self.name, detail="no route matches and SPANVISOR_TELEGRAM_CHAT is unset"
            )

    def _interrupt(self, rec: TaskMessage, rank: int) -> Interrupt | None:
        """A call of ``rank`` steps out of its wait when a new question or failure comes."""
        return Interrupt(rec.changed, lambda: self._question_due(rec)) if rank != PERSON else None

    def _version(self, rec: TaskMessage) -> int:
        return (FINAL_BIT if rec.final else 0) + rec.view.seq

    async def _older(self, rec: TaskMessage) -> bool:
        """Whether the message already shows a newer view than this one (before
        a restart, or by another replica's edit): then it is left as it is,
        and a final one ends this record."""
        stored = await self.claims.get(SHOWN, rec.key)
        seq = stored.get("seq") if stored is not None else None
        if not isinstance(seq, int):
            return False
        final = bool(stored.get("final")) if stored is not None else False
        if (FINAL_BIT if final else 0) + seq <= self._version(rec):
            return False
        self._mark_shown(rec, self._shown(rec))
        rec.final = rec.final or final
        return True

    async def _newest(self, rec: TaskMessage) -> None:
        """Record, once Telegram has it, that the message shows this view."""
        await self.claims.put_if_newer(SHOWN, rec.key, {"seq": rec.view.seq, "final": rec.final}, self._version(rec))

    def _question_due(self, rec: TaskMessage) -> float:
        """Due (any past time) when the message has a new question or failure to show; else never."""
        return float("-inf") if self._rank(rec) == PERSON and self._wants_edit(rec) else float("inf")

    async def _reply(self, rec: TaskMessage, batch: list[ThreadLine]) -> bool | None:
        """One reply with the lines of ``batch`` not posted before (each is
        claimed by its own key, so however a replay batches them, none shows
        twice). None: it stepped out of its wait for a question to show first."""
        from .render import line

        won: list[tuple[str, ThreadLine]] = []
        for item in batch:
            key = f"{rec.key}/{item.reply_key}"
            while True:
                claim = await self.claims.claim(REPLIES, key)
                if claim.value is not None or claim.won:
                    break
                # Another replica posts it now: its place in the story is here, so
                # wait until it is stored (or its lease lapses and it is ours).
                await self._clock.sleep(0.5)
                if self._deadline is not None and self._clock.now() >= self._deadline:
                    return None if not won else False
            if claim.value is None:
                won.append((key, item))
        if not won:
            return True
        args = {
            "text": "\n".join(line(item) for _, item in won),
            "parse_mode": "HTML",
            **self._where(rec),
            "reply_parameters": {"message_id": rec.message_id, "allow_sending_without_reply": True},
        }
        rank = PERSON if any(item.kind in ("approval", "error") for _, item in won) else URGENT
        try:
            async with self.claims.lease(REPLIES, [key for key, _ in won]):
                answer = await self.poster.send(
                    "sendMessage",
                    rec.chat,
                    args,
                    rank=rank,
                    key=won[0][0],
                    end=self._end,
                    interrupt=self._interrupt(rec, rank),
                )
        except asyncio.CancelledError:  # shutdown: another owner may post them at once
            for key, _ in won:
                await asyncio.shield(self.claims.release(REPLIES, key))
            raise
        if answer is DEFERRED:
            for key, _ in won:
                await self.claims.release(REPLIES, key)
            return None
        if answer is None or not answer.ok:
            for key, _ in won:
                await self.claims.release(REPLIES, key)
            self._give_up(rec, answer)
            return False
        for key, _ in won:
            await self.claims.settle(REPLIES, key, {"message_id": int(answer.result["message_id"])})
        if len(won) > 1:
            self.ctx.stats.inc("telegram_folded_lines_total", len(won) - 1)  # type: ignore[union-attr]
        return True

    async def _edit(self, rec: TaskMessage) -> bool | None:
        """True: shown (or a newer view is); False: given up; None: it stepped
        out of its wait for a question to show first (the caller edits again)."""
        if await self._older(rec):
            return True
        text, markup, pressable = self._message(rec)
        await self._keep(pressable)
        args: dict[str, Any] = {"message_id": rec.message_id, "text": text, "parse_mode": "HTML"}
        if markup is not None:
            args["reply_markup"] = markup  # none: Telegram takes the keyboard away
        rank = self._rank(rec)
        answer = await self.poster.send(
            "editMessageText",
            rec.chat,
            args,
            rank=rank,
            key=rec.key,
            end=self._end,
            interrupt=self._interrupt(rec, rank),
        )
        if answer is DEFERRED:
            return None
        # "Not modified": the message already says this (a replay, another replica's edit).
        if answer is None or not (answer.ok or NOT_MODIFIED in answer.error):
            self._give_up(rec, answer)
            return False
        self._mark_shown(rec, (text, json.dumps(markup, sort_keys=True)))
        await self._newest(rec)
        return True

    def _give_up(self, rec: TaskMessage, answer: Any) -> None:
        """Shutting down (``answer`` None), or Telegram refused for good: the rest is counted, logged once."""
        assert self.ctx is not None
        if answer is None:
            return  # the record stays as it is: shutdown counts what it still owes
        left = len(rec.lines) + 1
        rec.dead = True
        self.ctx.stats.drop(
            "telegram_refused",
            left,
            sink=self.name,
            detail=f"Telegram answered {answer.status}: {answer.error} (task {rec.view.task_id[:80]})",
        )

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

    # --- flush and shutdown ---------------------------------------------------

    def pending(self) -> int:
        return sum(1 for r in self._tasks.values() if not r.dead and (r.lines or self._wants_edit(r)))

    async def force_flush(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        self._flushing += 1
        try:
            for rec in self._tasks.values():
                rec.wake.set()
            while self.pending():
                if loop.time() >= end:
                    return False
                await asyncio.sleep(0.01)
            return True
        finally:
            self._flushing -= 1

    async def shutdown(self, timeout_s: float) -> None:
        if self.poster is None or self._closed:
            return
        self._closed = True
        # One deadline for all of it, so shutdown never outlasts its timeout
        # (an agent's process waits for it at exit).
        self._deadline = self._clock.now() + timeout_s * 0.9
        if self.presses is not None:
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
        try:
            await self.force_flush(max(0.0, self._deadline - self._clock.now()))
        finally:
            left = sum(len(r.lines) + (1 if self._wants_edit(r) else 0) for r in self._tasks.values() if not r.dead)
            workers = [r.worker for r in self._tasks.values() if r.worker is not None]
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if left and self.ctx is not None:
                self.ctx.stats.drop(
                    "telegram_undelivered",
                    left,
                    sink=self.name,
                    detail="shutdown deadline passed with Telegram updates pending",
                )
            self._tasks.clear()
            await self.poster.close()

    @classmethod
    async def check(cls, config: Config) -> list[tuple[str, bool, str]]:
        from .check import run_check

        return await run_check(config)

    def health(self) -> tuple[bool, str]:
        if self._problem is not None and self._problem != "not started":
            return False, self._problem
        return True, "ok"


async def _wait(event: asyncio.Event, clock: Clock, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass on ``clock``."""
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()
