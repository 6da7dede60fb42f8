"""The Web API methods of the fake Slack, answering as Slack documents them.

Every handler takes the scenario token (see :mod:`tests.fakes.slack_api`)
and the call's arguments and returns ``(HTTP status, body, headers)``.
Errors are HTTP 200 with ``{"ok": false, "error": ...}``; only rate limits
are HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from .slack_blocks import message_error
from .slack_store import Message, Workspace

Answer = tuple[int, dict[str, Any], dict[str, str]]
TEXT_POST = 40_000
TEXT_UPDATE = 4_000
FATAL_AFTER_POST = "xoxb-fatal-after-post"


def ok(**body: Any) -> Answer:
    return 200, {"ok": True, **body}, {}


def error(code: str, **extra: Any) -> Answer:
    return 200, {"ok": False, "error": code, **extra}, {}


def _flags(token: str) -> set[str]:
    """``xoxb-fatal-after-post-busy-nolist`` -> {"busy", "nolist"}."""
    rest = token[len(FATAL_AFTER_POST) :] if token.startswith(FATAL_AFTER_POST) else ""
    return {f for f in rest.split("-") if f}


class WebApi:
    def __init__(
        self,
        workspace: Workspace,
        channel_burst: int,
        channel_rate: float,
        busy_messages: int,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ws = workspace
        self.now = now
        self.channel_burst, self.channel_rate = channel_burst, channel_rate
        self.busy_messages = busy_messages
        self.scheduled: dict[str, str] = {}
        self._seq = itertools.count(1)
        self._buckets: dict[str, tuple[float, float]] = {}

    def call(self, method: str, token: str, args: dict[str, Any]) -> Answer:
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return error("unknown_method")
        answer: Answer = handler(token, args)
        return answer

    # --- helpers ---------------------------------------------------------

    def new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._seq):06d}"

    def _post_target(self, token: str, channel: Any) -> tuple[str | None, str]:
        """(error, channel id) for a post to a name or an ID."""
        ch = self.ws.by_name_or_id(channel)
        if ch is None:
            return "channel_not_found", ""
        if ch.archived:
            return "is_archived", ch.id
        if token == "xoxb-not-in-channel":
            return "not_in_channel", ch.id
        return None, ch.id

    def _rate_limited(self, cid: str) -> float | None:
        now = self.now()
        level, last = self._buckets.get(cid, (float(self.channel_burst), now))
        level = min(float(self.channel_burst), level + (now - last) * self.channel_rate)
        if level < 1:
            self._buckets[cid] = (level, now)
            return (1 - level) / self.channel_rate
        self._buckets[cid] = (level - 1, now)
        return None

    # --- methods ---------------------------------------------------------

    def _m_auth_test(self, token: str, args: dict[str, Any]) -> Answer:
        return ok(
            url="https://fake-workspace.slack.com/",
            team="Fake Workspace",
            user="spanvisor",
            team_id="T0FAKE",
            user_id="U0SPANV",
            bot_id="B0SPANV",
        )

    def _m_chat_postMessage(self, token: str, args: dict[str, Any]) -> Answer:
        err, cid = self._post_target(token, args.get("channel"))
        if err := err or message_error(args, TEXT_POST):
            return error(err)
        if (wait := self._rate_limited(cid)) is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(max(1, math.ceil(wait)))}
        thread_ts = args.get("thread_ts")
        if thread_ts is not None and self.ws.find(cid, thread_ts) is None:
            return error("thread_not_found")
        ts = self.new_ts()
        msg = self.ws.store(
            Message(
                cid,
                ts,
                args.get("text"),
                list(args.get("blocks") or []),
                list(args.get("attachments") or []),
                str(thread_ts) if thread_ts else None,
                args.get("reply_broadcast") in (True, "1", "true"),
                dict(args["metadata"]) if args.get("metadata") else None,
                0,
                args,
            )
        )
        if token.startswith(FATAL_AFTER_POST):
            if "busy" in _flags(token):
                # A busy channel: others talk after our message, so a client
                # that reads only the first page of history does not find it.
                for i in range(self.busy_messages):
                    self.ws.store(Message(cid, self.new_ts(), f"chatter {i}", [], [], user="U0OTHER"))
            return error("fatal_error")
        return ok(channel=cid, ts=ts, message={"text": msg.text, "ts": ts})

    def _m_chat_update(self, token: str, args: dict[str, Any]) -> Answer:
        ch = self.ws.by_id(args.get("channel"))  # an ID, never a name
        if ch is None:
            return error("channel_not_found")
        if ch.archived:
            return error("is_archived")
        msg = self.ws.find(ch.id, args.get("ts"))
        if msg is None:
            return error("message_not_found")
        if err := message_error(args, TEXT_UPDATE):
            return error(err)
        self.ws.edit(msg, args)
        return ok(channel=ch.id, ts=msg.ts, text=msg.text)

    def _m_chat_delete(self, token: str, args: dict[str, Any]) -> Answer:
        ch = self.ws.by_id(args.get("channel"))
        if ch is None:
            return error("channel_not_found")
        msg = self.ws.find(ch.id, args.get("ts"))
        if msg is None:
            return error("message_not_found")
        self.ws.delete(msg)
        return ok(channel=ch.id, ts=msg.ts)

    def _m_chat_getPermalink(self, token: str, args: dict[str, Any]) -> Answer:
        ch = self.ws.by_id(args.get("channel"))
        if ch is None:
            return error("channel_not_found")
        ts = str(args.get("message_ts"))
        if self.ws.find(ch.id, ts) is None:
            return error("message_not_found")
        link = f"https://fake-workspace.slack.com/archives/{ch.id}/p{ts.replace('.', '')}"
        return ok(channel=ch.id, permalink=link)

    def _m_conversations_history(self, token: str, args: dict[str, Any]) -> Answer:
        if "nohistory" in _flags(token) or token.startswith("xoxb-nohistory"):
            return error("missing_scope", needed="channels:history", provided="chat:write")
        ch = self.ws.by_id(args.get("channel"))  # Slack wants a conversation ID
        if ch is None:
            return error("channel_not_found")
        err, body = self.ws.history(ch.id, args)
        return error(err) if err else ok(**body)

    def _m_conversations_list(self, token: str, args: dict[str, Any]) -> Answer:
        if "nolist" in _flags(token):
            return error("missing_scope", needed="channels:read", provided="chat:write")
        err, body = self.ws.list_channels(args)
        return error(err) if err else ok(**body)

    def _m_chat_scheduleMessage(self, token: str, args: dict[str, Any]) -> Answer:
        err, cid = self._post_target(token, args.get("channel"))
        if err := err or message_error(args, TEXT_POST):
            return error(err)
        post_at = int(float(args.get("post_at") or 0))
        if post_at <= time.time():
            return error("time_in_past")
        if post_at > time.time() + 120 * 86_400:
            return error("time_too_far")
        sid = f"Q{next(self._seq):08d}"
        self.scheduled[sid] = cid
        return ok(channel=cid, scheduled_message_id=sid, post_at=post_at)

    def _m_chat_deleteScheduledMessage(self, token: str, args: dict[str, Any]) -> Answer:
        sid = str(args.get("scheduled_message_id"))
        if self.scheduled.get(sid) != args.get("channel"):
            return error("invalid_scheduled_message_id")
        del self.scheduled[sid]
        return ok()
