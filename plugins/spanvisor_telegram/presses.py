"""People's presses on a task's buttons, from Telegram into the control API.

Updates come by long polling (``getUpdates``, here), which needs no public
address: a ``serve`` behind NAT takes presses as well as one on the
internet; or by webhook (:mod:`.webhook`), which hands each press to
:meth:`Presses.take`. Telegram lets one poller at a time read a bot's updates (a second
one ends the first with 409), so among replicas sharing the state store the
one holding the lease ``telegram.poller`` polls; if it dies, another takes
over when the lease lapses. An update is confirmed by the next poll's
``offset``, so a poller that dies between handling and confirming hands the
same update to the next one: each press is claimed once (namespace
``telegram.presses``, by its query id), and the control log is idempotent on
the decision's id besides.

A press decides as the person the deciders file names for the Telegram
account that pressed (``telegram_user``): Telegram tells who pressed, and
only Telegram can say it, as the update comes from its servers on the
bot's own token. An account the file does not name may see, never decide:
its press is refused and audited. What is decided is the button's stored
entry (task, run, request and the digest of what the message shows), never
the press's data, so a client sending data of its own decides nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from spanvisor.chat.buttons import Button, from_stored
from spanvisor.chat.claims import Claims
from spanvisor.chat.presses import decide
from spanvisor.control.deciders import Deciders
from spanvisor.control.hub import Control
from spanvisor.stats import PipelineStats

from .api import BotApi
from .buttons import NAMESPACE as BUTTONS
from .buttons import token_of
from .render import units

log = logging.getLogger("spanvisor.telegram")
POLLER, PRESSES = "telegram.poller", "telegram.presses"
POLL_S = 20  # Telegram holds a long poll this long when nothing comes
LEASE_S = 60.0
MAX_IN_FLIGHT = 100
ANSWER_CHARS = 200  # answerCallbackQuery's text limit


class Presses:
    def __init__(
        self,
        api: BotApi,
        claims: Claims,
        control: Control,
        people: Deciders | None,
        stats: PipelineStats,
        show: Callable[[Button, Mapping[str, Any]], Awaitable[bool]],
    ) -> None:
        """``api``'s timeout must outlast a long poll; ``show`` posts a
        request whole under its message (the sink's pacing)."""
        self.api, self.claims, self.control, self.people, self.stats = api, claims, control, people, stats
        self.show = show
        self.offset = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._said_conflict = False
        self._inflight: set[str] = set()  # presses being handled here, by query id

    # --- the poller -------------------------------------------------------------

    async def run(self) -> None:
        backoff = 1.0
        while True:
            try:
                lease = await self.claims.claim(POLLER, "poller")
            except Exception:  # the store is away: no one can tell who polls
                await asyncio.sleep(backoff)
                continue
            if not lease.won:
                await asyncio.sleep(LEASE_S / 4)  # another replica polls
                continue
            reply = await self.api.call(
                "getUpdates", {"offset": self.offset, "timeout": POLL_S, "allowed_updates": ["callback_query"]}
            )
            if not reply.ok:
                if reply.status == 409 and not self._said_conflict:
                    self._said_conflict = True
                    log.error(
                        "telegram: another program reads this bot's updates (or a webhook is set: "
                        "deleteWebhook); presses wait until it stops (%s)",
                        reply.error,
                    )
                self.stats.inc("telegram_poll_errors_total")
                await asyncio.sleep(reply.retry_after_s or backoff)
                backoff = min(30.0, backoff * 2)
                continue
            backoff = 1.0
            for update in reply.result if isinstance(reply.result, list) else []:
                if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                    continue
                self.offset = max(self.offset, update["update_id"] + 1)
                query = update.get("callback_query")
                if isinstance(query, dict):
                    self.take(query)

    def take(self, query: dict[str, Any]) -> None:
        """Handle a press in the background (on this loop); never blocks."""
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.stats.drop("telegram_press_dropped", sink="telegram", detail=f"{MAX_IN_FLIGHT} presses in flight")
            qid = str(query.get("id") or "")
            if qid:  # the person is told, and presses again
                task = asyncio.get_running_loop().create_task(self._answer(qid, "⏳ Busy: press again in a moment."))
                task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
            return
        task = asyncio.get_running_loop().create_task(self.handle(query), name="telegram:press")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout_s))
        for t in list(self._tasks):
            t.cancel()

    # --- one press ----------------------------------------------------------------

    async def handle(self, query: Mapping[str, Any]) -> None:
        qid = str(query.get("id") or "")
        if not qid:
            return
        outcome = "error"
        # The store's claim tells replicas apart, not two deliveries in this
        # process (one owner): those meet here.
        if qid in self._inflight:
            self.stats.inc("telegram_presses_total", outcome="replay")
            return
        self._inflight.add(qid)
        try:
            claim = await self.claims.claim(PRESSES, qid)
            if not claim.won:
                outcome = "replay"
                return
            outcome = await self._press(qid, query)
            await self.claims.settle(PRESSES, qid, {"outcome": outcome})
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not stop the poller; the press may come again
            log.exception("telegram: a press failed")
            try:
                await self.claims.release(PRESSES, qid)
            except Exception:
                log.debug("telegram: a failed press's claim was not released")
        finally:
            self._inflight.discard(qid)
            self.stats.inc("telegram_presses_total", outcome=outcome)

    async def _press(self, qid: str, query: Mapping[str, Any]) -> str:
        token = token_of(query.get("data"))
        stored = await self.claims.get(BUTTONS, token) if token else None
        button = from_stored(stored) if stored is not None else None
        message = query.get("message")
        chat = message.get("chat", {}).get("id") if isinstance(message, dict) else None
        if button is None or button.token != token or str(chat) != button.chat:
            await self._answer(qid, "⚠️ This button is not one spanvisor knows (any more).")
            return "unknown"
        sender = query.get("from")
        user = sender.get("id") if isinstance(sender, dict) else None
        if not isinstance(user, int) or isinstance(user, bool):
            await self._answer(qid, "⚠️ Telegram did not say who pressed.")
            return "unknown"
        if button.action == "show":
            shown = await self.show(button, message if isinstance(message, dict) else {})
            await self._answer(
                qid,
                "📄 The whole request is in the replies."
                if shown
                else "⚠️ Not shown: see `spanvisor approvals --full`.",
            )
            return "shown"
        person = self.people.on_telegram(user) if self.people is not None else None
        outcome, said = await decide(
            self.control,
            button,
            press_id=qid,
            actor_id=f"telegram:{user}",
            person=person,
            source="telegram",
            key="telegram_user",
        )
        await self._answer(qid, said)
        return outcome

    async def _answer(self, qid: str, text: str) -> None:
        """The small notice Telegram shows the person who pressed (once; best effort)."""
        while units(text) > ANSWER_CHARS:  # counted as Telegram counts: UTF-16 units
            text = text[: len(text) - max(1, (units(text) - ANSWER_CHARS) // 2) - 1] + "…"
        reply = await self.api.call("answerCallbackQuery", {"callback_query_id": qid, "text": text})
        if not reply.ok:
            log.debug("telegram: answerCallbackQuery failed: %s", reply.error)
