"""What each coding-agent CLI sends its permission hook and reads back.

* Claude Code ``PreToolUse`` and ``PermissionRequest``, and Codex
  ``PreToolUse``: stdin JSON with ``session_id``, ``hook_event_name``,
  ``tool_name``, ``tool_input`` (and ``tool_use_id``); the answer is
  ``{"hookSpecificOutput": {"hookEventName": "PreToolUse",
  "permissionDecision": "allow|deny", "permissionDecisionReason": …}}`` or,
  for ``PermissionRequest``, ``{"hookSpecificOutput": {"hookEventName":
  "PermissionRequest", "decision": {"behavior": "allow|deny", "message": …}}}``.
* Gemini CLI ``BeforeTool``: stdin ``session_id``, ``tool_name``,
  ``tool_input``, ``timestamp``; the answer ``{"decision": "allow|deny",
  "reason": …}``.

Exit status 0 with that JSON on stdout. Input the hook cannot read is
denied with exit status 2 as well (every one of the CLIs treats 2 as "block
this call, show stderr to the model"), since the shape of the answer it
expects is then unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from spanvisor.redaction import redact

Cli = Literal["claude-code", "codex", "gemini"]
CLIS: tuple[Cli, ...] = ("claude-code", "codex", "gemini")
Answer = Literal["allow", "deny"]

# Where a tool's input names what it acts on, in order of preference.
_TARGET_KEYS = ("command", "cmd", "file_path", "absolute_path", "path", "notebook_path", "url", "pattern", "query")
MAX_TARGET = 4_000
MAX_QUESTION_TARGET = 300


class BadInput(ValueError):
    """The hook's stdin is not what the CLI documents."""


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call a CLI asks about."""

    cli: Cli
    event: str
    session_id: str | None
    tool: str
    tool_input: dict[str, Any]
    call_id: str | None

    @property
    def target(self) -> str | None:
        """What the call acts on: its command, else its path, URL or pattern."""
        for key in _TARGET_KEYS:
            value = self.tool_input.get(key)
            if isinstance(value, list) and value and all(isinstance(x, str) for x in value):
                value = " ".join(value)  # Codex may pass argv
            if isinstance(value, str) and value:
                return value[:MAX_TARGET]
        return None

    def question(self) -> str:
        """What a person is asked: the tool and its target, clipped and redacted."""
        target = self.target
        if target is None:
            return f"Allow {self.tool}?"
        shown = redact(" ".join(target.split()))
        if len(shown) > MAX_QUESTION_TARGET:
            shown = shown[: MAX_QUESTION_TARGET - 1] + "…"
        return f"Allow {self.tool}: {shown}?"

    def details(self) -> str:
        """The tool input as JSON, redacted (for the person deciding)."""
        return redact(json.dumps(self.tool_input, sort_keys=True, ensure_ascii=False, default=str))[:8_000]

    def action(self) -> dict[str, Any]:
        """The action a decision is bound to: the tool and its arguments."""
        return {"tool": self.tool, "arguments": self.tool_input}


def parse(cli: Cli, raw: bytes | str) -> Call:
    """The call on stdin; :class:`BadInput` (with a reason a person can act
    on, never the input itself) when it is not one."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the hook input is not JSON") from None
    if not isinstance(doc, dict):
        raise BadInput("the hook input is not a JSON object")
    tool = doc.get("tool_name")
    if not isinstance(tool, str) or not tool:
        raise BadInput("the hook input has no tool_name")
    tool_input = doc.get("tool_input", {})
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise BadInput("the hook input's tool_input is not an object")
    default_event = "BeforeTool" if cli == "gemini" else "PreToolUse"
    event = doc.get("hook_event_name") or default_event
    if not isinstance(event, str):
        raise BadInput("the hook input's hook_event_name is not a string")
    session = doc.get("session_id")
    call_id = doc.get("tool_use_id") or doc.get("call_id")
    return Call(
        cli=cli,
        event=event,
        session_id=session if isinstance(session, str) and session else None,
        tool=tool,
        tool_input=tool_input,
        call_id=call_id if isinstance(call_id, str) and call_id else None,
    )


def reply(cli: Cli, event: str, answer: Answer, reason: str) -> dict[str, Any]:
    """The JSON the CLI reads back for ``answer``."""
    if cli == "gemini":
        return {"decision": answer, "reason": reason}
    if event == "PermissionRequest":
        decision: dict[str, Any] = {"behavior": answer}
        if answer == "deny":
            decision["message"] = reason
        return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}}
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": answer,
            "permissionDecisionReason": reason,
        }
    }


__all__ = ["CLIS", "Answer", "BadInput", "Call", "Cli", "parse", "reply"]
