"""The fake Slack's code channels (Slack Code), as docs.slack.dev and the
official SDKs document them (read 2026-11-26; /tmp/slackcode/FACTS.md).

* ``agents.conversations.create`` (scope ``code_channels:manage``): ``name``
  is required unless ``origin_channel_id`` and ``origin_message_ts`` are
  given (both or neither); with a ``session_id`` Slack knows, the existing
  channel is returned instead of a new one. The channel is a real channel
  of the workspace: posts and edits work there until it is archived.
* ``agents.conversations.archive``: ``already_archived`` the second time;
  afterwards a post or an edit there answers ``is_archived`` (Slack's
  generic behaviour for an archived channel: UNCONFIRMED for code channels).
  ``summary_message_ts`` is kept when it names a message of the channel.
* ``agents.conversations.setProperties``: at least one property field;
  ``code_channel.context_bar_items`` replaces the bar: at most 5 items, each a
  ``key`` (at most 64 characters, unique) and a ``label`` (at most 128), an
  optional ``icon`` of Slack's list, ``url`` (at most 2048) and
  ``item_type`` (info or action; an action with a url is saved as info with
  the warning ``action_with_url_overridden_to_info``).
* ``agents.sessions.setStatus`` without ``thread_ts`` sets the code channel's
  own session status (:mod:`.slack_agents` asks :meth:`CodeChannels.of`).
* ``agents.conversations.setView`` upserts a tab by ``view_key`` (required
  for ``html``, ``block_kit`` and ``canvas``; a ``diff`` is the channel's one
  diff tab): ``block_kit`` needs ``blocks`` (a list, or its JSON text),
  ``html`` and ``diff`` need ``content`` of at most 1,000,000 bytes
  (``content_too_large``), ``canvas`` a ``canvas_id``; at most 5 tabs per
  channel; each update raises the tab's ``content_version``.
  ``agents.conversations.listViews`` lists them; ``removeView`` takes
  exactly one of ``view_key`` and ``view_id`` (``view_not_found``). Block Kit's limits on a
  tab are UNCONFIRMED: the fake applies a message's (at most 50 blocks
  here, a section's text at most 3,000 characters, a header's 150).

Errors the pages do not list are our reading: ``invalid_arguments`` for a
bad argument, ``not_agent_channel`` for a channel that is no code channel
(listViews' typical error), ``channel_not_found`` for an unknown ID.

Scenarios: a token ``xoxb-nocode…`` lacks ``code_channels:manage``
(``missing_scope``); ``refuse`` set to an error code makes every create
answer it (a workspace whose admin does not allow code channels).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from .slack_methods import Answer, error, ok
from .slack_store import Channel, Workspace

SCOPE = "code_channels:manage"
MAX_NAME = 200  # UNCONFIRMED: agents.sessions.rename's title limit, which renames the channel too
MAX_BAR_ITEMS = 5
MAX_KEY = 64
MAX_LABEL = 128
MAX_URL = 2048
ICONS = frozenset({"branch", "folder", "hierarchy", "life-ring", "link", "globe", "terminal", "code", "search", "lock"})
ITEM_TYPES = frozenset({"info", "action"})
URL_OVERRIDDEN = "action_with_url_overridden_to_info"
PROPERTY_FIELDS = ("title", "status", "code_channel", "agent_resource")
VIEW_TYPES = frozenset({"html", "diff", "block_kit", "canvas", "pull_request"})
MAX_VIEWS = 5
MAX_CONTENT = 1_000_000  # bytes
# Block Kit on a tab: UNCONFIRMED; a message's limits, and fewer blocks.
MAX_TAB_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150


@dataclass
class View:
    view_id: str
    type: str
    view_key: str | None
    name: str
    blocks: list[dict[str, Any]] | None = None
    content: str | None = None
    content_version: int = 1


@dataclass
class CodeChannel:
    id: str
    name: str
    session_id: str | None
    is_private: bool
    context_bar_items: list[dict[str, Any]] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)  # every setProperties call's arguments
    statuses: list[str] = field(default_factory=list)  # its session's statuses (setStatus without thread_ts)
    renames: list[str] = field(default_factory=list)  # every title agents.sessions.rename gave it
    views: dict[str, View] = field(default_factory=dict)  # by view_key (a diff: by "diff")
    view_calls: int = 0  # setView calls it took
    summary_message_ts: str | None = None
    archived: bool = False


class CodeChannels:
    METHODS = frozenset(
        {
            "agents.conversations.create",
            "agents.conversations.archive",
            "agents.conversations.setProperties",
            "agents.conversations.setView",
            "agents.conversations.listViews",
            "agents.conversations.removeView",
        }
    )

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.channels: dict[str, CodeChannel] = {}
        self.by_session: dict[str, str] = {}
        self.refuse: str | None = None
        self._ids = itertools.count(1)

    def of(self, channel_id: Any) -> CodeChannel | None:
        return self.channels.get(channel_id) if isinstance(channel_id, str) else None

    def call(self, method: str, token: str, args: dict[str, Any]) -> Answer:
        if token.startswith("xoxb-nocode"):
            return error("missing_scope", needed=SCOPE, provided="chat:write")
        if method == "agents.conversations.create":
            return self._create(args)
        code = self.of(args.get("channel_id"))
        if code is None:
            return error(
                "channel_not_found" if self.workspace.by_id(args.get("channel_id")) is None else "not_agent_channel"
            )
        if method == "agents.conversations.archive":
            return self._archive(code, args)
        if method == "agents.conversations.setView":
            return self._set_view(code, args)
        if method == "agents.conversations.removeView":
            key, vid = args.get("view_key"), args.get("view_id")
            if (key is None) == (vid is None):
                return error("invalid_arguments")  # exactly one of them
            slot = next((k for k, v in code.views.items() if v.view_id == vid or (key and v.view_key == key)), None)
            if slot is None:
                return error("view_not_found")
            gone = code.views.pop(slot)
            return ok(channel_id=code.id, view_id=gone.view_id)
        if method == "agents.conversations.listViews":
            views = [
                {"view_id": v.view_id, "view_key": v.view_key, "label": v.name, "content_version": v.content_version}
                for v in code.views.values()
            ]
            return ok(views=views)
        return self._set_properties(code, args)

    def _create(self, args: dict[str, Any]) -> Answer:
        if self.refuse is not None:
            return error(self.refuse)
        name, sid = args.get("name"), args.get("session_id")
        origin, origin_ts = args.get("origin_channel_id"), args.get("origin_message_ts")
        if (origin is None) != (origin_ts is None):
            return error("invalid_arguments")
        if origin is not None and self.workspace.find(origin, origin_ts) is None:
            return error("message_not_found")
        if origin is None and not isinstance(name, str):
            return error("invalid_arguments")  # required without an origin link
        if name is not None and (not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME):
            return error("invalid_arguments")
        if sid is not None and (not isinstance(sid, str) or not sid):
            return error("invalid_arguments")
        if isinstance(sid, str) and sid in self.by_session:
            return ok(channel_id=self.by_session[sid])  # idempotent on the session id
        cid = f"C0CODE{next(self._ids):05d}"
        self.workspace.channels[cid] = Channel(cid, f"code-{cid.lower()}")
        private = args.get("is_private") in (True, "true", "1")
        self.channels[cid] = CodeChannel(cid, str(name or "from its origin"), sid, private)
        if isinstance(sid, str):
            self.by_session[sid] = cid
        return ok(channel_id=cid)

    def _archive(self, code: CodeChannel, args: dict[str, Any]) -> Answer:
        if code.archived:
            return error("already_archived")
        ts = args.get("summary_message_ts")
        if isinstance(ts, str) and self.workspace.find(code.id, ts) is not None:
            code.summary_message_ts = ts  # a ts of no message is not recorded; the archive still succeeds
        code.archived = True
        self.workspace.channels[code.id].archived = True
        return ok()

    def _set_properties(self, code: CodeChannel, args: dict[str, Any]) -> Answer:
        if code.archived:
            return error("is_archived")
        if not any(args.get(f) is not None for f in PROPERTY_FIELDS):
            return error("invalid_arguments")  # "at least one must be provided"
        warnings: list[str] = []
        bar = None
        cc = args.get("code_channel")
        if cc is not None:
            if not isinstance(cc, dict):
                return error("invalid_arguments")
            items = cc.get("context_bar_items")
            if items is not None:
                bar = _bar(items, warnings)
                if bar is None:
                    return error("invalid_arguments")
        code.properties.append(dict(args))
        if bar is not None:
            code.context_bar_items = bar  # the array sent replaces the set
        extra: dict[str, Any] = {"warning": ",".join(warnings)} if warnings else {}
        return ok(channel_id=code.id, **extra)

    def _set_view(self, code: CodeChannel, args: dict[str, Any]) -> Answer:
        if code.archived:
            return error("is_archived")
        kind = args.get("type", "html")
        if kind not in VIEW_TYPES:
            return error("invalid_arguments")
        key = args.get("view_key")
        if kind == "diff":
            key = None  # ignored: a diff view is a per-channel singleton
        elif kind in ("html", "block_kit", "canvas") and (not isinstance(key, str) or not key):
            return error("invalid_arguments")
        content, blocks = args.get("content"), args.get("blocks")
        if kind in ("html", "diff"):
            if not isinstance(content, str):
                return error("invalid_arguments")
            if len(content.encode("utf-8")) > MAX_CONTENT:
                return error("content_too_large")
        if kind == "block_kit":
            if isinstance(blocks, str):
                try:
                    blocks = json.loads(blocks)
                except ValueError:
                    return error("invalid_blocks")
            if not _blocks_ok(blocks):
                return error("invalid_blocks")
        if kind == "canvas" and not isinstance(args.get("canvas_id"), str):
            return error("invalid_arguments")
        if kind == "pull_request" and not isinstance(args.get("pr_url"), str):
            return error("invalid_arguments")
        slot = "diff" if kind == "diff" else str(key)
        name = args.get("name") or args.get("label") or (str(key).rsplit("/", 1)[-1] if key else "Diff")
        view = code.views.get(slot)
        if view is None:
            if len(code.views) >= MAX_VIEWS:
                return error("too_many_views")  # our reading: the pages give the cap, not its error
            view = code.views[slot] = View(f"T{next(self._ids):09d}", kind, key, str(name))
        else:
            view.content_version += 1
            view.type, view.name = kind, str(name)
        view.blocks = blocks if kind == "block_kit" else None
        view.content = content if kind in ("html", "diff") else None
        code.view_calls += 1
        return ok(channel_id=code.id, view_id=view.view_id, content_version=view.content_version, type=kind)


def _blocks_ok(blocks: Any) -> bool:
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= MAX_TAB_BLOCKS:
        return False
    for b in blocks:
        if not isinstance(b, dict) or not isinstance(b.get("type"), str):
            return False
        text = b.get("text")
        if isinstance(text, dict):
            limit = MAX_HEADER_TEXT if b["type"] == "header" else MAX_SECTION_TEXT
            if not isinstance(text.get("text"), str) or not 1 <= len(text["text"]) <= limit:
                return False
        for element in b.get("elements", ()) if b["type"] == "context" else ():
            if not isinstance(element, dict) or len(str(element.get("text", ""))) > MAX_SECTION_TEXT:
                return False
    return True


def _bar(items: Any, warnings: list[str]) -> list[dict[str, Any]] | None:
    """The context bar as Slack keeps it, or None when Slack would refuse it."""
    if not isinstance(items, list) or len(items) > MAX_BAR_ITEMS:
        return None
    out: list[dict[str, Any]] = []
    keys: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            return None
        key, label = item.get("key"), item.get("label")
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY or key in keys:
            return None
        if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL:
            return None
        icon, url, kind = item.get("icon"), item.get("url"), item.get("item_type", "info")
        if icon is not None and icon not in ICONS:
            return None
        if url is not None and (not isinstance(url, str) or len(url) > MAX_URL):
            return None
        if kind not in ITEM_TYPES:
            return None
        kept = dict(item)
        if kind == "action" and url is not None:
            kept["item_type"] = "info"
            warnings.append(URL_OVERRIDDEN)
        keys.add(key)
        out.append(kept)
    return out


__all__ = ["SCOPE", "CodeChannel", "CodeChannels", "View"]
