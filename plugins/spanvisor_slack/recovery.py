"""Finding a parent Slack may have posted although it answered an error.

``chat.postMessage`` has no idempotency key: after ``fatal_error``,
``internal_error`` or a timeout the message may exist. Every parent carries
``metadata = {event_type: spanvisor_task, event_payload: {task_id, run_id}}``, so
the sink looks for it in the channel's history instead of posting again:

1. the channel's conversation ID (``conversations.history`` takes only an
   ID): known when the configured channel is one, or learnt from an earlier
   post's answer; otherwise looked up with ``conversations.list`` (paged,
   needs ``channels:read`` / ``groups:read``);
2. ``conversations.history`` from a little before the post, with metadata,
   page by page (``limit``, ``cursor``, ``has_more``) until the parent turns
   up or the pages end: a busy channel can push it past the first page.

Both are bounded by ``recover_s`` and the shutdown deadline. A search that
could not finish (rate limited past that bound, a timeout, Slack away) is
``unsure``: it says nothing about the parent, so its caller tries again
later and never takes it for "not posted".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spanvisor.sink import Clock

from .transport import CallOutcome, Transport

METADATA_TYPE = "spanvisor_task"
PAGE_SIZE = 200  # Slack suggests no more than 200 items a page
MAX_LIST_PAGES = 50  # 10,000 channels
MAX_HISTORY_PAGES = 20  # 4,000 messages since the post
HISTORY_SLACK_S = 5.0  # Slack's clock against ours


@dataclass(frozen=True, slots=True)
class Search:
    """What a search found: the channel's ID and the parent's ts, or why not.
    ``unsure``: the search did not finish (a transient failure), so whether
    the parent exists is unknown; without it, no ``ts`` means the search
    could never tell (no scope, the channel unknown) or read the history and
    the parent is not there."""

    channel_id: str | None
    ts: str | None = None
    why: str = ""
    unsure: bool = False


def _transient(out: CallOutcome) -> bool:
    """A failure another try may get past (429, timeout, 5xx, the deadline), not a permanent one."""
    return out.decision is None or out.decision.kind != "permanent"


def _next_cursor(data: Mapping[str, Any]) -> str:
    meta = data.get("response_metadata") or {}
    return str(meta.get("next_cursor") or "")


def _ours(message: Mapping[str, Any], key: str, event_type: str = METADATA_TYPE) -> bool:
    """Whether ``message`` is the parent of ``key`` (a task id and run: see
    record.parent_key), by the metadata it was posted with; for another
    ``event_type`` (a channel's board, .board) the payload's ``board``."""
    meta = message.get("metadata") or {}
    if meta.get("event_type") != event_type:
        return False
    said = meta.get("event_payload") or {}
    if event_type != METADATA_TYPE:
        return said.get("board") == key
    run = said.get("run_id")
    return (f"{said.get('task_id')}/{run}" if run else said.get("task_id")) == key


@dataclass
class ParentFinder:
    transport: Transport
    clock: Clock
    recover_s: float = 20.0
    deadline: Callable[[], float | None] = lambda: None
    _lookups: dict[str, asyncio.Lock] = field(default_factory=dict)
    _resume: dict[str, str] = field(default_factory=dict)

    def _end(self) -> float:
        end = self.clock.now() + self.recover_s
        shutdown = self.deadline()
        return end if shutdown is None else min(end, shutdown)

    async def find(self, key: str, channel: str, since: float, event_type: str = METADATA_TYPE) -> Search:
        """Look for the parent of ``key`` (record.parent_key), posted to
        ``channel`` (a name or an ID) after ``since`` (or, with another
        ``event_type``, the message of that type whose payload names ``key``)."""
        end = self._end()
        cid, why, unsure = await self.channel_id(channel, end)
        if cid is None:
            return Search(None, why=why, unsure=unsure)
        cursor = ""
        for _ in range(MAX_HISTORY_PAGES):
            page = cursor

            def build(page: str = page) -> Mapping[str, Any]:
                args: dict[str, Any] = {
                    "channel": cid,
                    "oldest": f"{since - HISTORY_SLACK_S:.6f}",
                    "inclusive": True,
                    "limit": PAGE_SIZE,
                    "include_all_metadata": True,
                }
                return {**args, "cursor": page} if page else args

            out = await self.transport.send("conversations.history", build, deadline=lambda: end)
            if not out.ok or out.data is None:
                error = out.failure.error if out.failure else "unknown"
                if _transient(out):
                    return Search(cid, why=f"conversations.history answered {error}", unsure=True)
                return Search(cid, why=f"conversations.history answered {error}; add the channels:history scope")
            for message in out.data.get("messages") or []:
                if _ours(message, key, event_type):
                    return Search(cid, str(message["ts"]))
            cursor = _next_cursor(out.data)
            if not out.data.get("has_more") or not cursor:
                return Search(cid, why="it is not in the channel's history")
        return Search(cid, why=f"it is not in the last {MAX_HISTORY_PAGES * PAGE_SIZE} messages of the channel")

    async def channel_id(self, channel: str, end: float) -> tuple[str | None, str, bool]:
        """(the channel's ID, "", False) or (None, why it is unknown, whether
        that may change on another try). One lookup of a name at a time: a
        restarted process searching for many tasks' parents at once would
        otherwise queue one conversations.list each (Tier 2, one every 3 s)
        and most would run out of time behind the others."""
        directory = self.transport.channels
        if (known := directory.known(channel)) is not None:
            return known, "", False
        lock = self._lookups.setdefault(channel, asyncio.Lock())
        async with lock:
            if (known := directory.known(channel)) is not None:
                return known, "", False
            return await self._list(channel, end)

    async def _list(self, channel: str, end: float) -> tuple[str | None, str, bool]:
        directory = self.transport.channels
        # A lookup that ran out of time goes on where it stopped: pages come
        # one every 3 s, and starting over could never reach a late page.
        cursor = self._resume.pop(channel, "")
        for _ in range(MAX_LIST_PAGES):
            page = cursor

            def build(page: str = page) -> Mapping[str, Any]:
                args: dict[str, Any] = {
                    "types": "public_channel,private_channel",
                    "exclude_archived": True,
                    "limit": PAGE_SIZE,
                }
                return {**args, "cursor": page} if page else args

            out = await self.transport.send("conversations.list", build, deadline=lambda: end)
            if not out.ok or out.data is None:
                error = out.failure.error if out.failure else "unknown"
                if _transient(out) and cursor:
                    self._resume[channel] = cursor
                return (
                    None,
                    f"conversations.list answered {error} while looking up {channel}'s ID: "
                    "configure the channel by ID, or add the channels:read scope",
                    _transient(out),
                )
            for ch in out.data.get("channels") or []:
                if isinstance(ch, Mapping) and ch.get("name") and ch.get("id"):
                    directory.learn(str(ch["name"]), str(ch["id"]))
            if (known := directory.known(channel)) is not None:
                return known, "", False
            cursor = _next_cursor(out.data)
            if not cursor:
                break
        return None, f"{channel} is not among the channels the bot can see: configure it by ID", False
