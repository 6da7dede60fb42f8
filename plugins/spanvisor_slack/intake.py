"""What happens to a person's click or command once Slack has been acked.

Both ways in (Socket Mode, HTTP) hand the raw payload to :class:`Intake`
*after* acknowledging it, on the sink's loop. For each interaction:

1. **Once.** Its key (the click's intervention id, or the command's) is
   claimed in the state store (namespace ``slack.payloads``) and settled when
   done: a retried envelope, a replayed request or the same click delivered
   to another replica sharing the store finds it taken and is dropped
   silently (acked, applied once, no second answer). If the store is away
   the click goes on: the control log is idempotent on the intervention id.
2. **Who.** Someone not allowed (:class:`~.webapi.Approvers`) gets an
   ephemeral "not allowed" and the decision is recorded as denied (audited).
   A Slack user the deciders file names (``slack_user``) decides as that
   person, so deciding from Slack and with a token is one person.
3. **Decide.** ``ctx.control.decide(decision)``; the :class:`Verdict` becomes
   the ephemeral answer: applied, already decided ("already approved by
   @x"), refused (why). A duplicate gets no answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from spanvisor.control.deciders import Deciders
from spanvisor.control.hub import Control, Verdict
from spanvisor.control.people import in_group
from spanvisor.control.runs import request_from_dict
from spanvisor.display.readable import from_text
from spanvisor.events import Decision
from spanvisor.statestores.api import StateStore
from spanvisor.stats import PipelineStats

from .fullview import SMALL_CHUNKS, full_modal
from .interact import (
    Click,
    Command,
    Interaction,
    OpenComment,
    OpenFull,
    Stop,
    Where,
    applied_text,
    comment_modal,
    parse_command,
    parse_event,
    parse_interactive,
    prior_text,
)
from .sessions import METHOD as SET_STATUS
from .sessions import NAMESPACE as SESSIONS
from .sessions import record_status, session_key
from .slash import SlashAnswers
from .text import clip, escape
from .webapi import Approvers, InteractApi

log = logging.getLogger("spanvisor.slack")
NAMESPACE = "slack.payloads"
LEASE_S = 60.0
# Work items in flight at once; beyond it an interaction is dropped (counted):
# Slack has been acked, the person clicks again.
MAX_IN_FLIGHT = 200


class Intake:
    def __init__(
        self,
        control: Control | None,
        store: StateStore,
        api: InteractApi,
        approvers: Approvers,
        stats: PipelineStats,
        owner: str,
        slash: SlashAnswers,
        people: Deciders | None = None,
    ) -> None:
        self.control, self.store, self.api = control, store, api
        self.approvers, self.stats, self.owner, self.slash = approvers, stats, owner, slash
        self.people = people
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    # --- entry points (any thread, any loop) --------------------------------

    def submit(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Queue the work for an acked payload: ``kind`` "interactive" or
        "slash_commands" (Socket Mode's envelope types). Never blocks."""
        loop = self.loop
        if loop is None or loop.is_closed():
            self.stats.drop("slack_interaction_dropped", sink="slack", detail="the Slack sink is not running")
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._spawn(kind, payload)
        else:
            loop.call_soon_threadsafe(self._spawn, kind, payload)

    def _spawn(self, kind: str, payload: Mapping[str, Any]) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.stats.drop("slack_interaction_dropped", sink="slack", detail=f"{MAX_IN_FLIGHT} interactions in flight")
            return
        task = asyncio.get_running_loop().create_task(self.handle(kind, payload), name="slack:interaction")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout_s))
        for t in list(self._tasks):
            t.cancel()

    # --- the work -------------------------------------------------------------

    async def handle(self, kind: str, payload: Mapping[str, Any]) -> None:
        try:
            items: list[Interaction]
            if kind == "slash_commands":
                cmd = parse_command(payload)
                items = [cmd] if cmd is not None else []
            elif kind == "events_api":
                stop = parse_event(payload)
                items = [stop] if stop is not None else []
            else:
                items = parse_interactive(payload)
            if not items:
                log.debug("Slack interaction of type %r is not ours; ignored", payload.get("type"))
            for item in items:
                await self._once(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take the sink's loop down
            log.exception("Slack interaction failed")

    async def _once(self, item: Interaction) -> None:
        owner = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        claimed = True
        try:
            claim = await self.store.claim(NAMESPACE, item.key, owner, LEASE_S)
            if not claim.won:
                self.stats.inc("slack_interactions_total", outcome="replay")
                return
        except Exception as exc:  # the store is away: the control log still dedupes
            log.warning("state store unavailable for a Slack payload (%s); going on without its claim", exc)
            claimed = False
        outcome = "error"
        try:
            outcome = await self._do(item)
        finally:
            self.stats.inc("slack_interactions_total", outcome=outcome)
            if claimed:
                try:
                    await self.store.put(NAMESPACE, item.key, {"outcome": outcome}, owner)
                except Exception as exc:
                    log.warning("could not record a handled Slack payload: %s", exc)

    async def _do(self, item: Interaction) -> str:
        if isinstance(item, Command):
            text, blocks = await self.slash.answer(item.text, item.where)
            await self.api.answer(item.where, text, blocks)
            return "command"
        if isinstance(item, OpenComment):
            return await self._open_comment(item)
        if isinstance(item, OpenFull):
            return await self._open_full(item)
        if isinstance(item, Stop):
            return await self._stop(item)
        return await self._click(item)

    async def _stop(self, item: Stop) -> str:
        """Slack's stop button on a task's session: the task's cancel, as the
        person who pressed it, through the path every cancel takes (the
        launcher stops the CLI, the hook blocks the next call, an agent reads
        ``cancelled``). Once applied, the session leaves ``processing`` when
        the parent shows the cancel (.sessions); refused, the person is told
        why and the session shows again what the task is doing."""
        try:
            found = await self.store.get(SESSIONS, session_key(item.channel_id, item.thread_ts))
        except Exception as exc:
            log.warning("state store unavailable for a Slack stop press (%s); press again in a moment", exc)
            return "error"
        task_id = found.get("task_id") if found is not None else None
        if not isinstance(task_id, str) or not task_id:
            log.info("Slack stop press on a session spanvisor does not know (%s)", item.thread_ts)
            return "unknown"
        run_id = found.get("run_id") if found is not None else ""
        d = Decision(
            intervention_id=item.key,
            task_id=task_id,
            action="cancel",
            actor_id=item.user_id,
            time_ns=item.time_ns,
            source="slack",
            verified=True,  # Slack's signed (or Socket Mode's authenticated) user
            run_id=run_id if isinstance(run_id, str) else "",
        )
        outcome = await self._click(Click(d, Where(item.user_id, item.channel_id)))
        if outcome not in ("applied", "duplicate", "already_decided"):
            await self._restore(item, d)
        return outcome

    async def _restore(self, item: Stop, d: Decision) -> None:
        """The session's status as the task stands (Slack does not change it by
        itself, but its stop button is pressed: it is shown again), by the
        sessions module's one rule, read from the control log's record."""
        rec = None
        if self.control is not None:
            try:
                rec = await self.control.run(d.task_id, d.run_id or None)
            except Exception:
                rec = None
        status = record_status(rec)
        # No thread: a code channel's own session (.sessions).
        where: dict[str, Any] = {"thread_ts": item.thread_ts} if item.thread_ts else {}
        await self.api.call(SET_STATUS, channel_id=item.channel_id, status=status, **where)

    async def _open_comment(self, item: OpenComment) -> str:
        ok, why = await self.approvers.allows(item.where)
        if not ok:
            await self.api.answer(item.where, f"🚫 You are not allowed to decide this: {escape(why or '')}")
            return "not_allowed"
        question = None
        if self.control is not None and item.approval_id is not None:
            rec = await self.control.run(item.task_id, item.run_id or None)
            reqs = rec.get("requests") if rec is not None else None
            req = reqs.get(item.approval_id) if isinstance(reqs, Mapping) else None
            if isinstance(req, Mapping) and isinstance(req.get("question"), str):
                question = req["question"]
        view_payload = comment_modal(
            item.task_id, item.approval_id or "", item.where, question, item.run_id, item.digest
        )
        opened = await self.api.call("views.open", trigger_id=item.trigger_id, view=view_payload)
        if opened is None:
            await self.api.answer(item.where, "⚠️ The comment form could not be opened; use Approve or Reject.")
            return "error"
        return "modal"

    async def _open_full(self, item: OpenFull) -> str:
        """The whole request in a modal, as the control log holds it (what
        the digest binds), secrets masked: anyone who sees the message may
        read it; deciding stays with the buttons."""
        rec = await self.control.run(item.task_id, item.run_id or None) if self.control is not None else None
        reqs = rec.get("requests") if rec is not None else None
        req = request_from_dict(reqs.get(item.approval_id)) if isinstance(reqs, Mapping) else None
        if req is None:
            await self.api.answer(item.where, "⚠️ That request is no longer known here.")
            return "error"
        for chunks in (None, SMALL_CHUNKS):  # Slack refuses views too large overall: a smaller one then
            view = full_modal(req, item.task_id) if chunks is None else full_modal(req, item.task_id, chunks)
            if await self.api.call("views.open", trigger_id=item.trigger_id, view=view) is not None:
                return "modal"
        command = f"spanvisor approvals --full {item.task_id}/{item.approval_id}"
        await self.api.answer(
            item.where, f"⚠️ The full request could not be opened here; `{escape(command)}` prints it."
        )
        return "error"

    async def _click(self, item: Click) -> str:
        d = item.decision
        known = self.people.on_slack(d.actor_id) if self.people is not None else None
        if known is not None:
            d = dataclasses.replace(d, person=known.name, groups=known.groups)
        if self.control is None:
            await self.api.answer(item.where, "⚠️ spanvisor cannot take decisions here (no pipeline).")
            return "error"
        d = dataclasses.replace(d, groups=await self._groups(d), proof="slack")
        ok, why = await self.approvers.allows(item.where)
        if not ok:
            reason = why or "not an approver"
            await self.control.decide(d, denied=reason, code="not_approver")
            await self.api.answer(item.where, f"🚫 You are not allowed to {d.action} this task: {escape(reason)}.")
            return "not_allowed"
        try:
            verdict = await self.control.decide(d)
        except Exception as exc:
            log.warning("recording a Slack decision failed: %s", exc)
            await self.api.answer(item.where, "⚠️ Your decision could not be recorded; try again in a moment.")
            return "error"
        text = answer_text(verdict, item)
        if text is not None:
            await self.api.answer(item.where, text)
        return verdict.outcome

    async def _groups(self, d: Decision) -> tuple[str, ...]:
        """The groups proven for a Slack decider: the deciders file's for the
        person their Slack user is, and the Slack user groups among those the
        request counts approvals from (``group:NAME`` matched by handle)."""
        wanted: tuple[str, ...] = ()
        if d.action == "approve" and d.approval_id and self.control is not None:
            rec = await self.control.run(d.task_id, d.run_id or None)
            reqs = rec.get("requests") if rec is not None else None
            req = request_from_dict(reqs.get(d.approval_id)) if isinstance(reqs, Mapping) else None
            only = req.approvers_from if req is not None else ()
            wanted = tuple(w[6:] for w in only if w.startswith("group:") and not in_group(d.groups, w[6:]))
        found = await self.approvers.member_of(d.actor_id, wanted) if wanted else ()
        return tuple(dict.fromkeys((*d.groups, *found)))


def answer_text(verdict: Verdict, item: Click) -> str | None:
    """The ephemeral line for a verdict; None for a duplicate (no second answer)."""
    if verdict.outcome == "applied" and verdict.votes_needed > 1 and verdict.votes < verdict.votes_needed:
        more = verdict.votes_needed - verdict.votes
        whom = escape(from_text(verdict.request))
        return clip(
            f"🗳️ Your approval is {verdict.votes} of {verdict.votes_needed}: "
            f"{more} more {'person' if more == 1 else 'people'}{whom} must approve before the agent goes on.",
            2900,
        )
    if verdict.outcome == "applied":
        return applied_text(item.decision)
    if verdict.outcome == "already_decided":
        line = prior_text(verdict.prior) if verdict.prior is not None else escape(verdict.reason or "")
        return clip(f"☑️ Not changed: {line}.", 2900)
    if verdict.outcome == "duplicate":
        return None
    return clip(f"⛔ Not done: {escape(verdict.reason or verdict.outcome)}.", 2900)


__all__ = ["NAMESPACE", "Intake", "answer_text"]
