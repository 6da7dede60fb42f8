"""The contract of a gate spanvisor ships as code the CLI loads (OpenCode's
plugin, pi's extension) instead of a hook entry in its settings: it sends
Claude Code's stdin keys and reads ``{"decision": "allow|deny", "reason": …}``,
and it sends the session's first prompt (``UserPromptSubmit``) and its end
(``SessionEnd`` with ``last_turn``: ``complete``, ``error``, ``cancelled``
or ``open``, and ``error``: the API's message) as the CLI shuts down, so
nothing waits for the CLI's exit."""

from __future__ import annotations

from typing import Any, ClassVar

from spanvisor.clis.adapter import Adapter, Verdict, said
from spanvisor.clis.ends import SessionEnds

TURNS = ("complete", "error", "cancelled", "open")


class PluginAdapter(Adapter):
    session_events: ClassVar[frozenset[str]] = frozenset({"UserPromptSubmit", "SessionEnd"})
    end_events: ClassVar[frozenset[str]] = frozenset({"SessionEnd"})
    # The end comes as the CLI shuts down: nothing to wait for.
    ends: ClassVar[SessionEnds] = SessionEnds(turns={"UserPromptSubmit": "open"}, waits_for_exit=False)

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if "tool_name" in doc:
            return None
        event = doc.get("hook_event_name")
        if event == "UserPromptSubmit":
            return {"session_id": doc.get("session_id"), "hook_event_name": event, "prompt": doc.get("prompt")}
        if event != "SessionEnd":
            return None
        last = doc.get("last_turn")
        return {
            "session_id": doc.get("session_id"),
            "hook_event_name": "SessionEnd",
            "outcome": last if last in TURNS else None,
            "said": said(doc.get("error")),
        }

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        return {"decision": answer, "reason": reason}

    def hook_setup(self, command: str, timeout_s: int) -> None:
        return None  # its gate is a file spanvisor ships (spanvisor assets export writes it)


__all__ = ["TURNS", "PluginAdapter"]
