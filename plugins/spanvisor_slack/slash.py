"""``/spanvisor``: ``status [agent]``, ``task <id>``, ``approvals [agent]``, ``help``.

Answers are ephemeral, every agent-controlled string escaped, within Block
Kit's limits (at most :data:`MAX_LISTED` tasks, so far fewer than 50 blocks;
each section clipped to 3,000 characters). What is listed is what *this*
process tracks (``Control.open_tasks``): with replicas sharing a state store
each holds only the tasks whose spans it received, and the footer says the
list may be partial. ``task <id>`` shows the task as this process tracks it,
else as the Slack sink last stored it in the shared state store (a finished
task, or another replica's), and says so. ``approvals`` lists every open
approval request from the shared control log (every replica's), with the
command that answers each from a terminal.

Who and where: ``status``, ``task`` and ``approvals`` answer only someone
who may decide in the channel they ask from (:class:`~.webapi.Approvers`;
with no approvers configured, anyone), and show only what is in scope: in a
channel, the tasks and requests whose message is in that channel (their
stored parent, else where the routes would post them); in a direct message
with the app, those the person may decide where they are posted. A member
of one team's channel does not read another team's questions.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable
from typing import Any

from spanvisor.control.hub import Control
from spanvisor.display.readable import clock, results
from spanvisor.display.task import progress_of
from spanvisor.events import TaskView
from spanvisor.statestores.api import StateStore
from spanvisor.statestores.memory import InMemoryStateStore

from .channels import is_channel_id
from .interact import Where
from .record import parent_key
from .shared import Stored
from .text import SECTION_TEXT, clip, escape
from .webapi import Approvers, InteractApi

MAX_LISTED = 20
Blocks = list[dict[str, Any]]

HELP = (
    "*/spanvisor* — what your agents are doing\n"
    "• `/spanvisor status` — running tasks (agent, task, status, progress, context, elapsed, thread)\n"
    "• `/spanvisor status <agent>` — only that agent's (a glob works: `rivet*`)\n"
    "• `/spanvisor task <task id>` — one task's summary and its thread\n"
    "• `/spanvisor approvals [agent]` — approval requests waiting for an answer\n"
    "• `/spanvisor help` — this text\n"
    "Buttons on a task's message approve, reject, cancel, retry or acknowledge."
)


def _elapsed(v: TaskView, now_ns: int) -> str:
    s = max(0, ((v.ended_ns or now_ns) - v.started_ns) // 1_000_000_000) if v.started_ns else 0
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _line(v: TaskView, link: str | None, now_ns: int) -> str:
    parts = [f"*{escape(v.agent_name or v.agent_id)}*", f"`{escape(v.task_id)}`"]
    if v.task_name:
        parts.append(escape(v.task_name))
    parts.append(escape(v.status.replace("_", " ")))
    if (progress := progress_of(v)) is not None:
        parts.append(f"{progress:.0f}%")
    if v.context_ratio is not None:
        parts.append(f"context {v.context_ratio:.0%}")
    parts.append(_elapsed(v, now_ns))
    text = " · ".join(parts)
    if v.step:
        text += f"\n➡️ {escape(v.step)}"
    if link:
        text += f"\n<{link}|open thread>"
    return clip(text, SECTION_TEXT - 100)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}]}


class SlashAnswers:
    def __init__(
        self,
        control: Control | None,
        store: StateStore,
        namespace: str,
        api: InteractApi | None,
        approvers: Approvers | None = None,
        home: Callable[[TaskView], str | None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.control, self.store, self.namespace, self.api = control, store, namespace, api
        # Who may decide where (None: anyone), and where a task's message
        # goes before it is posted (the sink's routes).
        self.approvers, self.home = approvers, home
        self.clock_ns = clock_ns
        # One process's store: no replicas can hold tasks this one does not.
        self.partial = not isinstance(store, InMemoryStateStore)

    async def answer(self, text: str, where: Where) -> tuple[str, Blocks]:
        words = text.split()
        verb = words[0].lower() if words else "help"
        if verb not in ("status", "task", "approvals") or (verb == "task" and len(words) < 2):
            return "spanvisor help", [_section(HELP)]
        allowed, why = await self.approvers.allows(where) if self.approvers is not None else (True, None)
        if not allowed:
            text = f"🚫 Only approvers see tasks and approval requests here ({escape(why or 'not an approver')})."
            return "not allowed", [_section(text)]
        if verb == "status":
            return await self.status(words[1] if len(words) > 1 else None, where)
        if verb == "task":
            return await self.task(words[1], where)
        return await self.approvals(words[1] if len(words) > 1 else None, where)

    async def _channel_of(self, key: str, view: TaskView | None) -> tuple[str | None, str | None]:
        """Where a task's message is: its stored parent's channel ID, and the
        channel the routes post it to (a #name or an ID), either unknown."""
        try:
            ref = await self.store.get(f"{self.namespace}.parent", key)
        except Exception:  # the store is away: the routes still say where it goes
            ref = None
        posted = str(ref["channel"]) if ref and isinstance(ref.get("channel"), str) and ref["channel"] else None
        routed = self.home(view) if view is not None and self.home is not None else None
        return posted, routed

    async def _in_scope(self, where: Where | None, posted: str | None, routed: str | None) -> bool:
        if where is None:  # asked from inside the process (no person, no channel)
            return True
        if posted is None and routed is None:
            return False
        if where.channel_id is not None and not where.channel_id.startswith("D"):
            here = {where.channel_id, (where.channel_name or "").lstrip("#")} - {""}
            return any(c is not None and (c in here or c.lstrip("#") in here) for c in (posted, routed))
        # A direct message with the app: what the person may decide where it is posted.
        if self.approvers is None:
            return True
        cid = posted or (routed if routed and is_channel_id(routed) else None)
        named = routed.lstrip("#") if routed and not is_channel_id(routed) else None
        return (await self.approvers.allows(Where(where.user_id, cid, named)))[0]

    async def _scoped(self, where: Where | None, keyed: list[tuple[str, TaskView | None]]) -> list[bool]:
        channels = await asyncio.gather(*(self._channel_of(key, view) for key, view in keyed))
        return list(await asyncio.gather(*(self._in_scope(where, *c) for c in channels)))

    async def _link(self, key: str) -> str | None:
        """The thread of ``key`` (record.parent_key), when its parent message is known."""
        try:
            ref = await self.store.get(f"{self.namespace}.parent", key)
        except Exception:  # the store is away: no link
            return None
        if not ref or not ref.get("ts") or not ref.get("channel") or self.api is None:
            return None
        data = await self.api.call(
            "chat.getPermalink", get=True, channel=str(ref["channel"]), message_ts=str(ref["ts"])
        )
        link = str(data.get("permalink") or "") if data else ""
        # Only a plain https link goes inside <…|…>.
        return link if link.startswith("https://") and not any(c in link for c in "|<> ") else None

    async def status(self, agent: str | None, where: Where | None = None) -> tuple[str, Blocks]:
        if self.control is None:
            return "no pipeline", [_section("spanvisor is not tracking tasks here.")]
        views = [v for v in await self.control.open_tasks() if v.ended_ns is None]
        if agent:
            views = [v for v in views if fnmatch.fnmatchcase(v.agent_id, agent)]
        seen = await self._scoped(where, [(parent_key(v), v) for v in views])
        views = [v for v, ok in zip(views, seen, strict=True) if ok]
        views.sort(key=lambda v: v.started_ns)
        shown = views[:MAX_LISTED]
        links = await asyncio.gather(*(self._link(parent_key(v)) for v in shown))
        now = self.clock_ns()
        who = f" of `{escape(agent)}`" if agent else ""
        title = f"*{len(views)} running task{'s' if len(views) != 1 else ''}{who}*"
        blocks: Blocks = [_section(title)]
        blocks += [_section(_line(v, link, now)) for v, link in zip(shown, links, strict=True)]
        notes = []
        if len(views) > len(shown):
            notes.append(f"{len(views) - len(shown)} more not shown (`/spanvisor status <agent>` narrows it).")
        if self.partial:
            notes.append("Tasks tracked by this spanvisor replica only; other replicas may run more.")
        if notes:
            blocks.append(_context(" ".join(notes)))
        fallback = clip(f"{len(views)} running task(s)", 200)
        return fallback, blocks

    async def approvals(self, agent: str | None, where: Where | None = None) -> tuple[str, Blocks]:
        """The open requests of every replica (the shared control log)."""
        control = self.control
        if control is None:
            return "no pipeline", [_section("spanvisor takes no decisions here.")]
        items = await control.open_requests()
        if agent:
            items = [x for x in items if fnmatch.fnmatchcase(str(x.get("agent_id") or ""), agent)]

        def key(x: dict[str, Any]) -> str:
            task, run = str(x.get("task_id") or ""), x.get("run_id")
            return f"{task}/{run}" if isinstance(run, str) and run else task

        views = await asyncio.gather(*(control.task(str(x.get("task_id") or "")) for x in items))
        seen = await self._scoped(where, [(key(x), v) for x, v in zip(items, views, strict=True)])
        items = [x for x, ok in zip(items, seen, strict=True) if ok]
        items.sort(key=lambda x: int(x.get("requested_ns") or 0))
        now = self.clock_ns()
        who = f" of `{escape(agent)}`" if agent else ""
        blocks: Blocks = [_section(f"*{len(items)} open approval request{'s' if len(items) != 1 else ''}{who}*")]
        for x in items[:MAX_LISTED]:
            age = max(0, (now - int(x.get("requested_ns") or now)) // 1_000_000_000)
            timeout = x.get("timeout_s")
            limit = f" · times out after {float(timeout):g}s" if isinstance(timeout, int | float) else ""
            text = (
                f"*{escape(str(x.get('agent_id') or 'unknown'))}* · `{escape(str(x.get('task_id')))}` · "
                f"approval `{escape(str(x.get('approval_id')))}` · asked {age}s ago{limit}\n"
                f"{escape(clip(str(x.get('question') or ''), 500))}\n"
                f"`spanvisor approve {escape(str(x.get('task_id')))} {escape(str(x.get('approval_id')))}"
                f" --run {escape(str(x.get('run_id')))}`"
            )
            blocks.append(_section(text))
        if len(items) > MAX_LISTED:
            blocks.append(_context(f"{len(items) - MAX_LISTED} more not shown."))
        return clip(f"{len(items)} open approval request(s)", 200), blocks

    async def _key(self, task_id: str) -> str:
        """The parent key of the task id's latest run (the shared control log
        knows its runs); the bare id when it knows none."""
        try:
            rec = await self.control.run(task_id) if self.control is not None else None
        except Exception:  # the store is away: the bare id
            rec = None
        run = rec.get("run_id") if rec else None
        return f"{task_id}/{run}" if isinstance(run, str) and run else task_id

    async def _stored_view(self, key: str) -> TaskView | None:
        """The newest view the Slack sink stored for the task (:mod:`.shared`,
        the record replicas agree on), with the decisions merged into it: how
        a finished task, or another replica's, last looked."""
        try:
            raw = await self.store.get(f"{self.namespace}.view", key)
        except Exception:  # the store is away: nothing to show from it
            return None
        rec = Stored.load(raw)
        return None if rec is None else rec.shown_view

    async def task(self, task_id: str, where: Where | None = None) -> tuple[str, Blocks]:
        task_id = task_id[:200]
        view = await self.control.task(task_id) if self.control is not None else None
        stored = view is None
        key = parent_key(view) if view is not None else await self._key(task_id)
        if view is None:
            view = await self._stored_view(key)
        # Out of scope reads as unknown: the answer says nothing of another channel's task.
        if not (await self._scoped(where, [(key, view)]))[0]:
            view, link = None, None
        else:
            link = await self._link(key)
        if view is None:
            text = f"spanvisor knows no task `{escape(task_id)}`: it is not open in this process"
            text += " and no Slack message was posted for it."
            if link:
                text += f"\n<{link}|open thread>"
            return "task not found", [_section(text)]
        blocks: Blocks = [_section(_line(view, link, self.clock_ns()))]
        if view.message:
            blocks.append(_section(escape(view.message)))
        if view.results:
            blocks.append(_section("\n".join(f"*{escape(k)}:* {escape(v)}" for k, v in results(view.results))))
        for req in view.approvals[:5]:
            blocks.append(_section(f"⏳ Waiting for approval `{escape(req.approval_id)}`: {escape(req.question)}"))
        for d in view.decisions[-5:]:
            by = f"<@{d.actor_id}>" if d.source == "slack" else escape(d.actor_name or d.actor_id)
            blocks.append(_context(f"{escape(d.action)} by {by}"))
        if view.cost_usd:
            blocks.append(_context(f"~${view.cost_usd:.2f} (estimate)"))
        if stored:
            # Say where this came from: not a live view, maybe minutes old.
            when = clock(view.updated_ns) if view.updated_ns else "an unknown time"
            blocks.append(_context(f"As last posted to Slack ({when}); the task is not open in this process."))
        return clip(f"task {task_id}", 200), blocks


__all__ = ["HELP", "MAX_LISTED", "SlashAnswers"]
