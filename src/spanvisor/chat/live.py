"""A chat sink's engine: one live message per task, edited in place, its
story as replies to it, for any channel (Telegram, Teams).

``export`` never waits on the channel: it folds each event into the task's
record (the newest view by ``TaskView.seq``, the thread lines owed) and
wakes the task's worker. Each task has one worker, so its message comes
before its replies and the replies keep their order; the workers of all
tasks share the channel's limits (its poster), the most urgent call first.

Nothing doubled across restarts and replicas: the task's message is
claimed in the state store before it is sent and where it is stored after
(``<channel>.parent``), each reply likewise (``<channel>.reply``), so a
restarted process or another replica edits the same message and never
posts a line twice; the newest view a message shows is kept too
(``<channel>.shown``), so an event replayed after a restart never moves it
back. A routine edit waits ``update_interval`` after the last one and is
built from the newest view when its turn comes, so many changes between two
edits are one edit; a status change, a question for a person and the end
are edited at once, and a new question or failure steps in front of
replies already waiting.

A channel brings how its message looks and the three calls that make,
reply to and edit it (:class:`LiveMessageSink`'s abstract methods), each
answering a :class:`Posted`.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from spanvisor.display.thread import ThreadLine, ThreadPolicy
from spanvisor.events import Event, HumanIntervention, TaskView
from spanvisor.sink import BaseSink, Clock, MonotonicClock, SinkResult

from .buttons import Button
from .pacing import LOG, PERSON, ROUTINE, URGENT, Interrupt
from .record import FOLDS, MAX_PENDING_LINES, TaskMessage, is_final, parent_key
from .routes import Route, home_channel

log = logging.getLogger("spanvisor.chat")
MAX_OPEN_TASKS = 10_000
KEPT_MAX = 10_000  # buttons known to be in the store already
FINAL_BIT = 1 << 48  # a view's version: final first, then seq


@dataclass(frozen=True, slots=True)
class Posted:
    """A channel's answer to one call: ``ok``, and the id of what it made
    (a message, a reply), or why not."""

    ok: bool
    id: str | None = None
    status: int = 0
    error: str = ""


# A call that stepped out of its wait: its caller sends something better first.
DEFERRED = Posted(False, error="deferred")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A task's message as the channel sends it: ``fingerprint`` tells two
    renders apart (an unchanged one is not sent), ``payload`` is the
    channel's own, ``pressable`` the buttons it shows."""

    fingerprint: str
    payload: Any
    pressable: list[Button] = field(default_factory=list)


class LiveMessageSink(BaseSink):
    # Said when a task no route takes is counted (which setting to set).
    unrouted_detail: ClassVar[str] = "no route matches and no default chat is set"

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
        self.poster: Any = None  # the channel's poster once started
        self.claims: Any = None  # spanvisor.chat.claims.Claims once started
        self._kept: OrderedDict[str, None] = OrderedDict()
        self._unrouted: OrderedDict[str, None] = OrderedDict()  # tasks counted as unrouted once
        self._refused: OrderedDict[str, None] = OrderedDict()  # tasks the channel refused for good
        self._closed = False  # shut down: a second shutdown does nothing
        self.chat: str | None = None  # where tasks no route names go
        self.routes: tuple[Route, ...] = ()

    # --- what a channel brings --------------------------------------------------

    def _record(self, key: str, chat: str, view: TaskView) -> TaskMessage:
        """A new task's record (a channel may keep more of it)."""
        return TaskMessage(key, chat, view)

    @abstractmethod
    def _render(self, rec: TaskMessage) -> Rendered: ...

    @abstractmethod
    def _batch(self, lines: Sequence[ThreadLine]) -> list[ThreadLine]:
        """The lines the next reply holds (at least the first)."""

    async def _prepare(self, rec: TaskMessage) -> Posted | None:
        """Before the task's message is first sent (Telegram: its forum topic)."""
        return Posted(True)

    @abstractmethod
    async def _open(self, rec: TaskMessage, shown: Rendered, rank: int, interrupt: Interrupt | None) -> Posted | None:
        """Send the task's message; its id in the answer."""

    @abstractmethod
    async def _send_reply(
        self, rec: TaskMessage, lines: list[ThreadLine], rank: int, interrupt: Interrupt | None
    ) -> Posted | None:
        """One reply holding ``lines`` under the task's message."""

    @abstractmethod
    async def _send_edit(
        self, rec: TaskMessage, shown: Rendered, rank: int, interrupt: Interrupt | None
    ) -> Posted | None:
        """Edit the task's message to ``shown`` (an edit changing nothing is ok)."""

    @abstractmethod
    def _place(self, rec: TaskMessage) -> dict[str, Any]:
        """Where the task's message is, as stored for other replicas."""

    @abstractmethod
    def _placed(self, rec: TaskMessage, value: dict[str, Any]) -> None:
        """Take where the task's message is from what :meth:`_place` stored."""

    async def _ours(self, chat: str) -> bool:
        """Whether ``chat`` is one the settings name (the default or a route's)."""
        return chat in self._chats()

    def _chats(self) -> set[str]:
        return {c for c in (self.chat, *(r.channel for r in self.routes)) if c}

    async def _stop_intake(self, timeout_s: float) -> None:
        """At shutdown, before the flush: stop taking people's presses."""

    # --- names in the state store and the stats ---------------------------------

    def _ns(self, what: str) -> str:
        return f"{self.name}.{what}"

    def _drop(self, reason: str, count: int, detail: str) -> None:
        if self.ctx is not None:
            self.ctx.stats.drop(f"{self.name}_{reason}", count, sink=self.name, detail=detail)

    # --- export: fold, wake, return -------------------------------------------

    async def export(self, events: Sequence[Event]) -> SinkResult:
        if self.ctx is None:
            return SinkResult.SUCCESS
        if self._problem is not None:
            self._drop("not_configured", len(events), self._problem)
            return SinkResult.SUCCESS
        for event in events:
            self._fold(event)
        return SinkResult.SUCCESS

    def _fold(self, event: Event) -> None:
        view = event.task
        key = parent_key(view)
        rec = self._tasks.get(key)
        if rec is None:
            if key in self._refused:
                return  # its channel refused it for good: counted once, never asked again
            if len(self._tasks) >= MAX_OPEN_TASKS:
                self._drop("too_many_tasks", 1, f"{MAX_OPEN_TASKS} tasks open")
                return
            bare = isinstance(event, HumanIntervention) and not event.known
            # A decision's bare view names no agent or repo to route by: its
            # task's message, wherever it is, is found in the state store.
            chat = "" if bare else home_channel(view, self.routes, self.chat)
            if chat is None:
                self._unrouted_once(key)
                return
            rec = self._tasks[key] = self._record(key, chat, view)
            rec.known = False
        # A decision on a task this process does not track says nothing of its state.
        if not (isinstance(event, HumanIntervention) and not event.known):
            if view.seq >= rec.view.seq or not rec.known:
                rec.view = view
            rec.known = True
        rec.final = rec.final or is_final(event)
        for item in self.policy.lines(event):
            if len(rec.lines) >= MAX_PENDING_LINES:
                self._drop("lines_full", 1, f"{MAX_PENDING_LINES} lines wait")
                continue
            rec.lines.append(item)
        rec.wake.set()
        rec.changed.set()
        if rec.worker is None:
            rec.worker = asyncio.get_running_loop().create_task(self._work(rec), name=f"spanvisor-{self.name}-task")

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
                    batch = self._batch(rec.lines)
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
                        await wait(rec.wake, self._clock, due - self._clock.now())
                        continue
                    if await self._edit(rec) is False:
                        return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s sink: task %s stopped on a bug; its updates are dropped", self.name, rec.view.task_id)
        finally:
            rec.worker = None
            if self._tasks.get(rec.key) is rec and (
                rec.dead or (rec.final and not rec.lines and not self._wants_edit(rec))
            ):
                del self._tasks[rec.key]

    def _wants_edit(self, rec: TaskMessage) -> bool:
        return rec.message_id is None or (rec.known and rec.shown != self._render(rec).fingerprint)

    def _rank(self, rec: TaskMessage) -> int:
        """A new question or a new failure first; then a status change; then routine."""
        asks = tuple(a.approval_id for a in rec.view.approvals)
        failed = rec.view.status == "error" and rec.shown_status != "error"
        if (asks and asks != rec.shown_asks) or failed:
            return PERSON
        if rec.final or rec.view.status != rec.shown_status or asks != rec.shown_asks:
            return URGENT
        return ROUTINE

    def _mark_shown(self, rec: TaskMessage, fingerprint: str) -> None:
        rec.shown, rec.shown_status = fingerprint, rec.view.status
        rec.shown_asks = tuple(a.approval_id for a in rec.view.approvals)
        rec.edited_at = self._clock.now()

    async def _keep(self, pressable: list[Button]) -> None:
        """What each button stands for, in the state store before a message shows it."""
        for button in pressable:
            if button.token not in self._kept:
                await self.claims.put(self._ns("buttons"), button.token, button.stored())
                self._kept[button.token] = None
                while len(self._kept) > KEPT_MAX:
                    self._kept.popitem(last=False)

    def _due(self, rec: TaskMessage) -> float:
        if self._flushing or self._rank(rec) != ROUTINE:
            return self._clock.now()
        return rec.edited_at + self._interval

    async def _parent(self, rec: TaskMessage) -> bool:
        """The task's message: found in the state store, or sent and stored."""
        parents = self._ns("parent")
        while True:
            claim = await self.claims.claim(parents, rec.key)
            if claim.value is not None:
                self._placed(rec, claim.value)
                if not await self._ours(rec.chat):
                    # Whoever may write the state store must not redirect a
                    # task's story to a chat no setting names (a chat dropped
                    # from the settings since is no longer ours either).
                    rec.dead = True
                    self._drop(
                        "misplaced",
                        len(rec.lines) + 1,
                        f"the stored place of task {rec.view.task_id[:80]} "
                        "is a chat the settings do not name; its updates are dropped",
                    )
                    return False
                if not rec.known:  # a decision's ids only: the message keeps what it shows
                    rec.shown = self._render(rec).fingerprint
                return True
            if claim.won:
                break
            await self._clock.sleep(0.5)  # another replica is sending it: its id comes soon
            if self._deadline is not None and self._clock.now() >= self._deadline:
                return False
        if not rec.chat:  # a decision on a task no chat takes, and no message of it anywhere
            await self.claims.release(parents, rec.key)
            rec.dead = True
            self._unrouted_once(rec.key)
            return False
        ready = await self._prepare(rec)
        if ready is None or not ready.ok:
            await self.claims.release(parents, rec.key)
            self._give_up(rec, ready)
            return False
        while True:  # sent again, as it then reads, when a question comes while it waits
            shown = self._render(rec)
            await self._keep(shown.pressable)
            rank = self._rank(rec)
            # A busy channel's queue can outlast the claim's lease: it is renewed while the call waits.
            try:
                async with self.claims.lease(parents, [rec.key]):
                    answer = await self._open(rec, shown, rank, self._interrupt(rec, rank))
            except asyncio.CancelledError:  # shutdown: the next owner sends it at once, not after the lease
                await asyncio.shield(self.claims.release(parents, rec.key))
                raise
            if answer is not DEFERRED:
                break
        if answer is None or not answer.ok or answer.id is None:
            await self.claims.release(parents, rec.key)
            self._give_up(rec, answer)
            return False
        rec.message_id = answer.id
        self._mark_shown(rec, shown.fingerprint)
        await self.claims.settle(parents, rec.key, self._place(rec))
        await self._newest(rec)
        return True

    def _unrouted_once(self, key: str) -> None:
        if key not in self._unrouted:
            self._unrouted[key] = None
            if len(self._unrouted) > MAX_OPEN_TASKS:
                self._unrouted.popitem(last=False)
            self._drop("unrouted", 1, self.unrouted_detail)

    def _interrupt(self, rec: TaskMessage, rank: int) -> Interrupt | None:
        """A call of ``rank`` steps out of its wait when a new question or failure comes."""
        return Interrupt(rec.changed, lambda: self._question_due(rec)) if rank != PERSON else None

    def _version(self, rec: TaskMessage) -> int:
        return (FINAL_BIT if rec.final else 0) + rec.view.seq

    async def _older(self, rec: TaskMessage) -> bool:
        """Whether the message already shows a newer view than this one (before
        a restart, or by another replica's edit): then it is left as it is,
        and a final one ends this record."""
        stored = await self.claims.get(self._ns("shown"), rec.key)
        seq = stored.get("seq") if stored is not None else None
        if not isinstance(seq, int):
            return False
        final = bool(stored.get("final")) if stored is not None else False
        if (FINAL_BIT if final else 0) + seq <= self._version(rec):
            return False
        self._mark_shown(rec, self._render(rec).fingerprint)
        rec.final = rec.final or final
        return True

    async def _newest(self, rec: TaskMessage) -> None:
        """Record, once the channel has it, that the message shows this view."""
        value = {"seq": rec.view.seq, "final": rec.final}
        await self.claims.put_if_newer(self._ns("shown"), rec.key, value, self._version(rec))

    def _question_due(self, rec: TaskMessage) -> float:
        """Due (any past time) when the message has a new question or failure to show; else never."""
        return float("-inf") if self._rank(rec) == PERSON and self._wants_edit(rec) else float("inf")

    async def _reply(self, rec: TaskMessage, batch: list[ThreadLine]) -> bool | None:
        """One reply with the lines of ``batch`` not posted before (each is
        claimed by its own key, so however a replay batches them, none shows
        twice). None: it stepped out of its wait for a question to show first."""
        replies = self._ns("reply")
        won: list[tuple[str, ThreadLine]] = []
        for item in batch:
            key = f"{rec.key}/{item.reply_key}"
            while True:
                claim = await self.claims.claim(replies, key)
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
        # Progress alone leaves a bucket's last call to a question or a status
        # change (the pacer keeps it), so a question never waits out a backlog.
        kinds = {item.kind for _, item in won}
        rank = PERSON if kinds & {"approval", "error"} else LOG if kinds <= FOLDS else URGENT
        try:
            async with self.claims.lease(replies, [key for key, _ in won]):
                answer = await self._send_reply(rec, [item for _, item in won], rank, self._interrupt(rec, rank))
        except asyncio.CancelledError:  # shutdown: another owner may post them at once
            for key, _ in won:
                await asyncio.shield(self.claims.release(replies, key))
            raise
        if answer is None or not answer.ok:
            for key, _ in won:
                await self.claims.release(replies, key)
            if answer is DEFERRED:
                return None
            self._give_up(rec, answer)
            return False
        for key, _ in won:
            await self.claims.settle(replies, key, {"message_id": answer.id})
        if len(won) > 1 and self.ctx is not None:
            self.ctx.stats.inc(f"{self.name}_folded_lines_total", len(won) - 1)
        return True

    async def _edit(self, rec: TaskMessage) -> bool | None:
        """True: shown (or a newer view is); False: given up; None: it stepped
        out of its wait for a question to show first (the caller edits again)."""
        if await self._older(rec):
            return True
        shown = self._render(rec)
        await self._keep(shown.pressable)
        rank = self._rank(rec)
        answer = await self._send_edit(rec, shown, rank, self._interrupt(rec, rank))
        if answer is DEFERRED:
            return None
        if answer is None or not answer.ok:
            self._give_up(rec, answer)
            return False
        self._mark_shown(rec, shown.fingerprint)
        await self._newest(rec)
        return True

    def _give_up(self, rec: TaskMessage, answer: Posted | None) -> None:
        """Shutting down (``answer`` None), or the channel refused for good: the rest is counted, logged once."""
        if answer is None:
            return  # the record stays as it is: shutdown counts what it still owes
        rec.dead = True
        self._refused[rec.key] = None
        while len(self._refused) > MAX_OPEN_TASKS:
            self._refused.popitem(last=False)
        self._drop(
            "refused",
            len(rec.lines) + 1,
            f"{self.name} answered {answer.status}: {answer.error} (task {rec.view.task_id[:80]})",
        )

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
        await self._stop_intake(timeout_s)
        try:
            await self.force_flush(max(0.0, self._deadline - self._clock.now()))
        finally:
            left = sum(len(r.lines) + (1 if self._wants_edit(r) else 0) for r in self._tasks.values() if not r.dead)
            workers = [r.worker for r in self._tasks.values() if r.worker is not None]
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if left:
                self._drop("undelivered", left, f"shutdown deadline passed with {self.name} updates pending")
            self._tasks.clear()
            await self.poster.close()

    def health(self) -> tuple[bool, str]:
        if self._problem is not None and self._problem != "not started":
            return False, self._problem
        return True, "ok"


async def wait(event: asyncio.Event, clock: Clock, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass on ``clock``."""
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(max(0.0, seconds)))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()
