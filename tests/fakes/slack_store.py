"""The fake Slack's workspace: channels, messages, and how Slack pages and edits them.

- Channels have IDs (``C`` + 9 characters, derived from the name so tests
  can compute them with :func:`channel_id`). Methods that Slack documents as
  taking a *conversation ID* (``conversations.history``, ``chat.update``,
  ``chat.delete``, ``chat.getPermalink``) find a channel by ID only; posts
  take a name or an ID. A name is a channel of the workspace the first time
  any call names it (so tests need not declare theirs), except ``missing``;
  ``archived`` is archived. The workspace also holds ``filler`` channels
  created before any test's, so a client listing channels must page through
  ``conversations.list`` to find its own.
- History and channel lists are paged as Slack pages them: newest first
  (history), ``limit`` per page, ``has_more`` and
  ``response_metadata.next_cursor`` (an opaque base64 cursor; a bad one
  answers ``invalid_cursor``).
- :meth:`Workspace.edit` applies ``chat.update``'s rules: blocks left out are
  kept unless ``text`` is sent (then they are removed); attachments left out
  are kept, ``attachments: []`` clears them; metadata left out is kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
HISTORY_MAX = 999
LIST_MAX = 1000


@dataclass
class Message:
    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    thread_ts: str | None = None
    reply_broadcast: bool = False
    metadata: dict[str, Any] | None = None
    edits: int = 0
    args: dict[str, Any] = field(default_factory=dict)
    user: str | None = None  # None: posted by the bot under test

    def as_history(self, with_metadata: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text or ""}
        out.update({"user": self.user} if self.user else {"bot_id": "B0SPANV", "app_id": "A0SPANV"})
        if self.blocks:
            out["blocks"] = self.blocks
        if self.attachments:
            out["attachments"] = self.attachments
        if self.thread_ts:
            out.update(subtype="thread_broadcast", thread_ts=self.thread_ts)
        if with_metadata and self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass
class Channel:
    id: str
    name: str
    archived: bool = False

    def as_list_item(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": True,
            "is_private": False,
            "is_archived": self.archived,
            "is_member": True,
        }


def looks_like_id(name: str) -> bool:
    return bool(_ID.fullmatch(name))


def channel_id(name: str) -> str:
    """The ID the fake gives a channel name (an ID is returned as it is)."""
    if looks_like_id(name):
        return name
    return "C" + hashlib.md5(name.lstrip("#").encode()).hexdigest()[:9].upper()


def _cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _uncursor(kind: str, cursor: Any) -> str | None:
    """The value in a cursor of this kind; None when it is not one of ours."""
    try:
        got, _, value = base64.b64decode(str(cursor), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return value if got == kind and value else None


def _limit(raw: Any, default: int, most: int) -> int | None:
    try:
        n = int(raw) if raw not in (None, "") else default
    except (TypeError, ValueError):
        return None
    return min(max(n, 1), most)


def _truthy(v: Any) -> bool:
    return v in (True, 1, "1", "true", "True")


class Workspace:
    def __init__(self, filler: int = 250) -> None:
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, dict[str, Message]] = {}
        self.deleted: list[Message] = []
        for i in range(filler):
            self._add(f"team-{i:04d}")
        for name in ("general", "agents"):
            self._add(name)
        self._add("archived").archived = True

    def _add(self, name: str) -> Channel:
        ch = self.channels.get(channel_id(name))
        if ch is None:
            ch = self.channels[channel_id(name)] = Channel(channel_id(name), name)
        return ch

    # --- finding channels -----------------------------------------------

    def by_id(self, cid: Any) -> Channel | None:
        return self.channels.get(cid) if isinstance(cid, str) else None

    def by_name_or_id(self, channel: Any) -> Channel | None:
        """What a post to ``channel`` reaches; a new name becomes a channel."""
        if not isinstance(channel, str) or not channel:
            return None
        if looks_like_id(channel):
            return self.by_id(channel)
        name = channel.lstrip("#")
        if not name or name == "missing":
            return None
        return self._add(name)

    def list_channels(self, args: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """conversations.list: (error, body)."""
        limit = _limit(args.get("limit"), 100, LIST_MAX)
        if limit is None:
            return "invalid_limit", {}
        start = 0
        if args.get("cursor"):
            offset = _uncursor("offset", args["cursor"])
            if offset is None or not offset.isdigit():
                return "invalid_cursor", {}
            start = int(offset)
        skip_archived = _truthy(args.get("exclude_archived"))
        every = [c for c in self.channels.values() if not (skip_archived and c.archived)]
        page = every[start : start + limit]
        more = start + limit < len(every)
        return None, {
            "channels": [c.as_list_item() for c in page],
            "response_metadata": {"next_cursor": _cursor("offset", str(start + limit)) if more else ""},
        }

    # --- messages --------------------------------------------------------

    def store(self, msg: Message) -> Message:
        self.messages.setdefault(msg.channel, {})[msg.ts] = msg
        return msg

    def find(self, cid: Any, ts: Any) -> Message | None:
        return self.messages.get(str(cid), {}).get(str(ts))

    def delete(self, msg: Message) -> None:
        del self.messages[msg.channel][msg.ts]
        self.deleted.append(msg)

    def edit(self, msg: Message, args: dict[str, Any]) -> None:
        """chat.update, as Slack documents it."""
        if "text" in args:
            msg.text = args["text"]
        if args.get("blocks") is not None:
            msg.blocks = list(args["blocks"])
        elif "text" in args:
            msg.blocks = []  # text without blocks renders the text: the old blocks go
        if args.get("attachments") is not None:
            msg.attachments = list(args["attachments"])
        if args.get("metadata") is not None:
            msg.metadata = dict(args["metadata"])
        msg.edits += 1
        msg.args = args

    def history(self, cid: str, args: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """conversations.history: (error, body), newest first, paged."""
        limit = _limit(args.get("limit"), 100, HISTORY_MAX)
        if limit is None:
            return "invalid_limit", {}
        try:
            oldest = Decimal(str(args.get("oldest") or 0))
            latest = Decimal(str(args["latest"])) if args.get("latest") else Decimal("Infinity")
        except InvalidOperation:
            return "invalid_ts_oldest", {}
        inclusive = _truthy(args.get("inclusive"))
        if args.get("cursor"):
            try:
                latest, inclusive_latest = Decimal(_uncursor("next_ts", args["cursor"]) or "x"), False
            except InvalidOperation:
                return "invalid_cursor", {}
        else:
            inclusive_latest = inclusive

        def in_range(ts: Decimal) -> bool:
            above = ts >= oldest if inclusive else ts > oldest
            below = ts <= latest if inclusive_latest else ts < latest
            return above and below

        visible = [
            m
            for m in self.messages.get(cid, {}).values()
            if (m.thread_ts is None or m.reply_broadcast) and in_range(Decimal(m.ts))
        ]
        visible.sort(key=lambda m: Decimal(m.ts), reverse=True)
        page, more = visible[:limit], len(visible) > limit
        body: dict[str, Any] = {
            "messages": [m.as_history(_truthy(args.get("include_all_metadata"))) for m in page],
            "has_more": more,
            "pin_count": 0,
        }
        if more:
            body["response_metadata"] = {"next_cursor": _cursor("next_ts", page[-1].ts)}
        return None, body
