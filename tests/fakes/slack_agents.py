"""The fake Slack's agent sessions, as docs.slack.dev documents them (read 2026-11-26).

``agents.sessions.setStatus`` (Tier 3; bot token with ``chat:write``, the
app declared as an agent) creates the session of a thread on its first call
and sets its status after: ``status`` one of processing, active, suspended,
closed; ``channel_id`` the conversation's ID; ``thread_ts`` the thread's
root message; ``title`` at most 200 characters, used only on creation. An
app not subscribed to ``agent_session_stopped`` gets ``ok`` with the warning
``missing_agent_session_stopped_event_subscription``. Slack never changes a
status by itself: a press of the stop button (:meth:`AgentSessions.stop`,
only while the session is ``processing``) sends the event and leaves the
status as it was.

Without ``thread_ts`` the call sets a code channel's own session status
(Slack Code: "omit it for a code channel"), which :mod:`.slack_codechannels`
keeps; on another channel it answers ``invalid_arguments`` (our reading).
``agents.sessions.rename`` without ``thread_ts`` renames a code channel's
session, and with it the channel ("this also renames the channel"; title
1-200 characters; ``session_not_found`` on a channel that is none).

Scenarios by token: ``xoxb-notagent-…``: the app is not declared as an
agent (``missing_scope``, needed ``assistant:write``); ``xoxb-nostopevent-…``:
not subscribed to the stop event. Error codes for bad arguments are our
reading (``invalid_arguments``, ``channel_not_found``, ``thread_not_found``):
the method's page lists none beyond the common ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .slack_methods import Answer, error, ok
from .slack_store import Workspace

STATUSES = frozenset({"processing", "active", "suspended", "closed"})
MAX_TITLE = 200
NO_STOP_SUBSCRIPTION = "missing_agent_session_stopped_event_subscription"


@dataclass
class Session:
    channel: str
    thread_ts: str
    title: str | None
    statuses: list[str] = field(default_factory=list)  # every status set, in order

    @property
    def status(self) -> str:
        return self.statuses[-1]


class AgentSessions:
    METHODS = frozenset({"agents.sessions.setStatus", "agents.sessions.rename"})

    def __init__(self, workspace: Workspace, code_channel: Callable[[Any], Any] = lambda _: None) -> None:
        """``code_channel``: the code channel of an ID (one with ``statuses``), or None."""
        self.workspace = workspace
        self.code_channel = code_channel
        self.sessions: dict[tuple[str, str], Session] = {}
        self._events = 0

    def call(self, method: str, token: str, args: dict[str, Any]) -> Answer:
        if token.startswith("xoxb-notagent"):
            return error("missing_scope", needed="assistant:write", provided="chat:write")
        ch = self.workspace.by_id(args.get("channel_id"))
        if ch is None:
            return error("channel_not_found")
        ts = args.get("thread_ts")
        if ts is None and method == "agents.sessions.setStatus":
            return self._channel_status(ch.id, args)
        if ts is None and method == "agents.sessions.rename":
            return self._channel_rename(ch.id, args)
        if not isinstance(ts, str) or self.workspace.find(ch.id, ts) is None:
            return error("thread_not_found")
        key = (ch.id, ts)
        if method == "agents.sessions.rename":
            title = args.get("title")
            if key not in self.sessions:
                return error("thread_not_found")
            if not isinstance(title, str) or not 1 <= len(title) <= MAX_TITLE:
                return error("invalid_arguments")
            self.sessions[key].title = title
            return ok()
        status, title = args.get("status"), args.get("title")
        if status not in STATUSES:
            return error("invalid_arguments")
        if title is not None and (not isinstance(title, str) or len(title) > MAX_TITLE):
            return error("invalid_arguments")
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = Session(ch.id, ts, title)
        session.statuses.append(str(status))
        extra: dict[str, Any] = {"status": status, "title": session.title}
        if token.startswith("xoxb-nostopevent"):
            extra["warning"] = NO_STOP_SUBSCRIPTION
        return ok(**extra)

    def _channel_status(self, cid: str, args: dict[str, Any]) -> Answer:
        code = self.code_channel(cid)
        status, title = args.get("status"), args.get("title")
        if code is None or status not in STATUSES:
            return error("invalid_arguments")
        if title is not None and (not isinstance(title, str) or len(title) > MAX_TITLE):
            return error("invalid_arguments")
        code.statuses.append(str(status))
        return ok(status=status)

    def _channel_rename(self, cid: str, args: dict[str, Any]) -> Answer:
        """A code channel's session renamed: "this also renames the channel"."""
        code = self.code_channel(cid)
        title = args.get("title")
        if code is None:
            return error("session_not_found")
        if not isinstance(title, str) or not 1 <= len(title) <= MAX_TITLE:
            return error("invalid_arguments")
        if code.archived:
            return error("is_archived")  # our reading: Slack's generic answer for an archived channel
        code.name = title
        code.renames.append(title)
        return ok(title=title)

    def of(self, channel: str, thread_ts: str) -> Session | None:
        return self.sessions.get((channel, thread_ts))

    def stop(self, channel: str, thread_ts: str, user_id: str = "U0ALICE") -> dict[str, Any]:
        """A press of the session's stop button: the ``event_callback`` Slack
        delivers (over HTTP or Socket Mode). Slack shows the button only while
        the session is processing; pressing another is a test's mistake."""
        session = self.sessions.get((channel, thread_ts))
        assert session is not None and session.status == "processing", (channel, thread_ts, session)
        return self._press(channel, thread_ts, user_id)

    def stop_channel(self, channel: str, user_id: str = "U0ALICE") -> dict[str, Any]:
        """A press of a code channel's own stop button (its session set
        without ``thread_ts``): the event names the channel and no thread
        (UNCONFIRMED: Slack's page shows ``thread_ts`` on every press)."""
        code = self.code_channel(channel)
        assert code is not None and code.statuses and code.statuses[-1] == "processing", (channel, code)
        return self._press(channel, None, user_id)

    def _press(self, channel: str, thread_ts: str | None, user_id: str) -> dict[str, Any]:
        self._events += 1
        now = time.time()
        return {
            "token": "verification-token-is-deprecated",
            "team_id": "T0FAKE",
            "api_app_id": "A0SPANV",
            "type": "event_callback",
            "event_id": f"Ev{self._events:010d}",
            "event_time": int(now),
            "event": {
                "type": "agent_session_stopped",
                "channel": channel,
                **({"thread_ts": thread_ts} if thread_ts is not None else {}),
                "user": user_id,
                "streaming_message_ts": [],
                "event_ts": f"{now:.6f}",
            },
        }


__all__ = ["MAX_TITLE", "NO_STOP_SUBSCRIPTION", "STATUSES", "AgentSessions", "Session"]
