"""The hook contracts of GitHub Copilot CLI, OpenCode and Cline, read into
the shape of :mod:`spanvisor.gate.contracts` (Claude Code's keys) and
answered in each CLI's own; standard library only, as the rest of the gate.

* **GitHub Copilot CLI** ``preToolUse`` (a ``{"type": "command", "bash":
  …, "timeoutSec": N}`` entry in ``~/.copilot/hooks/*.json`` or the
  ``hooks`` of its settings): stdin ``sessionId``, ``timestamp``, ``cwd``,
  ``toolName``, ``toolArgs`` (an object), ``traceparent``; the answer
  ``{"permissionDecision": "allow|deny", "permissionDecisionReason": …}``.
  Exit status 1 or 2 blocks too; a hook past its ``timeoutSec`` (30 s when
  unset) lets the call run.
* **OpenCode** has no command hooks: spanvisor's plugin
  (``spanvisor/_assets/opencode/spanvisor-gate.js``) sends Claude Code's
  stdin keys and reads ``{"decision": "allow|deny", "reason": …}``; any
  other outcome (no answer, a non-zero status, a timeout, no spanvisor to
  run) makes the plugin throw, which blocks the call.
* **Cline** ``PreToolUse`` (an executable ``~/.cline/hooks/PreToolUse``):
  stdin ``taskId``, ``hookName``, ``tool_call`` (``id``, ``name``,
  ``input``), ``workspaceRoots``. Cline runs the call when the hook exits
  non-zero, says nothing or outlives its fixed 120 s, and its
  ``{"cancel": true}`` stops the whole run; so an allow is ``{"cancel":
  false}``, a shell call (``run_commands``) is blocked alone by replacing
  its commands with one that fails saying why (``overrideInput``), and any
  other denied call stops the run (``cancel``, with the reason): every
  answer with exit status 0.

Their turn and session ends (read by :func:`session_doc` into Claude
Code's keys, each answered with ``{}`` and exit status 0):

* **Copilot CLI** names no event in its input: ``userPromptSubmitted``
  (``prompt``), ``agentStop`` (``stopReason``), ``errorOccurred``
  (``error`` ``{message, name}``, ``errorContext``) and ``sessionEnd``
  (``reason``: ``complete``, ``error``, ``abort``, …) are told apart by
  their keys.
* **Cline** runs ``~/.cline/hooks/TaskComplete``, ``TaskError`` and
  ``TaskCancel`` with ``hookName`` ``agent_end``, ``agent_error`` (its
  ``error.message``) and ``agent_abort`` (its ``reason``): each is the
  end of its task (``taskId``); ``SessionShutdown`` (``session_shutdown``)
  when its run stopped without one (a hook's ``{"cancel": true}``).
* **OpenCode**: spanvisor's plugin sends one ``SessionEnd`` per session
  when OpenCode shuts down, saying how its last turn ended
  (``last_turn``: ``complete``, ``error``, ``cancelled`` or ``open``;
  ``error``: the API's message).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any

# Cline's shell tool and the key of its scripts.
CLINE_SHELL_TOOL = "run_commands"
SCRIPTS_KEY = "commands"
# The event a Cline shell call is answered as (its block replaces the commands).
CLINE_SHELL_EVENT = "PreToolUse:run_commands"
# What a blocked Cline shell call runs instead: it fails, saying why, and runs nothing else.
BLOCKED_EXIT = 126
BLOCK_STATUS: dict[str, int] = {"cline": 0}


def _copilot(doc: Mapping[str, Any]) -> dict[str, Any]:
    args = doc.get("toolArgs", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            args = {"arguments": args}  # a tool whose arguments are one string: kept whole
    return {
        "session_id": doc.get("sessionId"),
        "hook_event_name": "preToolUse",
        "tool_name": doc.get("toolName"),
        "tool_input": args,
        "tool_use_id": doc.get("toolCallId"),
        "cwd": doc.get("cwd"),
    }


def _cline(doc: Mapping[str, Any]) -> dict[str, Any]:
    call = doc.get("tool_call")
    call = call if isinstance(call, dict) else {}
    pre = doc.get("preToolUse")
    pre = pre if isinstance(pre, dict) else {}
    tool = call.get("name") or pre.get("toolName")
    tool_input = call.get("input", {}) if "input" in call else pre.get("parameters", {})
    roots = doc.get("workspaceRoots")
    cwd = roots[0] if isinstance(roots, list) and roots and isinstance(roots[0], str) else None
    return {
        "session_id": doc.get("taskId"),
        "hook_event_name": CLINE_SHELL_EVENT if tool == CLINE_SHELL_TOOL else "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": call.get("id"),
        "cwd": cwd,
    }


_NORMALIZERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {"copilot": _copilot, "cline": _cline}


def normalized(cli: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with Claude Code's keys (unchanged for the CLIs that use them)."""
    read = _NORMALIZERS.get(cli)
    return read(doc) if read is not None else doc


def _copilot_reply(event: str, answer: str, reason: str) -> dict[str, Any]:
    return {"permissionDecision": answer, "permissionDecisionReason": reason}


def _opencode_reply(event: str, answer: str, reason: str) -> dict[str, Any]:
    return {"decision": answer, "reason": reason}


def blocked_script(reason: str) -> str:
    """The one command a blocked Cline shell call runs: it says why on
    stderr and fails (the reason quoted whole: nothing of it runs)."""
    return f"printf '%s\\n' {shlex.quote(reason)} >&2; exit {BLOCKED_EXIT}"


def _cline_reply(event: str, answer: str, reason: str) -> dict[str, Any]:
    if answer == "allow":
        return {"cancel": False}
    if event == CLINE_SHELL_EVENT:
        return {"overrideInput": {SCRIPTS_KEY: [blocked_script(reason)]}, "context": reason}
    return {"cancel": True, "errorMessage": reason}


_CLINE_ENDS = {
    "agent_end": "TaskComplete",
    "agent_error": "TaskError",
    "agent_abort": "TaskCancel",
    "session_shutdown": "SessionShutdown",
}
# The outcome each of Cline's ends states.
CLINE_OUTCOMES = {"TaskComplete": "complete", "TaskError": "error", "TaskCancel": "cancelled"}
# Cline's run stopped (a hook's cancel stops it so, with no task end): its ends, and this.
CLINE_SHUTDOWN = "SessionShutdown"
CLINE_ENDS = frozenset({*CLINE_OUTCOMES, CLINE_SHUTDOWN})
OPENCODE_TURNS = ("complete", "error", "cancelled", "open")


def _said(value: object) -> str | None:
    """An error's message: ``{"message": …}`` (Copilot CLI passes the API's
    error body as a JSON string inside it), else the string itself."""
    if isinstance(value, dict):
        value = value.get("message")
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.startswith("{"):
        try:
            inner = json.loads(text)
        except (ValueError, RecursionError):
            return text
        nested = inner.get("error") if isinstance(inner, dict) else None
        for where in (inner, nested):
            found = where.get("message") if isinstance(where, dict) else None
            if isinstance(found, str) and found.strip():
                return found.strip()
    return text


def _copilot_session(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    if "toolName" in doc or "toolArgs" in doc:
        return None
    if "error" in doc or "errorContext" in doc:
        event, said = "errorOccurred", _said(doc.get("error"))
    elif "stopReason" in doc:
        event, said = "agentStop", None
    elif "prompt" in doc:
        event, said = "userPromptSubmitted", None
    elif "reason" in doc and "source" not in doc:
        event, said = "sessionEnd", None
    else:
        return None
    return {"session_id": doc.get("sessionId"), "hook_event_name": event, "reason": doc.get("reason"), "said": said}


def _cline_session(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    if "tool_call" in doc or "preToolUse" in doc:
        return None
    name = doc.get("hookName")
    event = _CLINE_ENDS.get(name) if isinstance(name, str) else None
    if event is None:
        return None
    said = _said(doc.get("error")) if event == "TaskError" else _said(doc.get("reason"))
    outcome = CLINE_OUTCOMES.get(event)
    return {"session_id": doc.get("taskId"), "hook_event_name": event, "outcome": outcome, "said": said}


def _opencode_session(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    if "tool_name" in doc or doc.get("hook_event_name") != "SessionEnd":
        return None
    last = doc.get("last_turn")
    return {
        "session_id": doc.get("session_id"),
        "hook_event_name": "SessionEnd",
        "outcome": last if last in OPENCODE_TURNS else None,
        "said": _said(doc.get("error")),
    }


_STATED = ("outcome", "said")
_SESSION_READERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any] | None]] = {
    "copilot": _copilot_session,
    "cline": _cline_session,
    "opencode": _opencode_session,
}


def session_doc(cli: str, doc: dict[str, Any]) -> dict[str, Any] | None:
    """A turn's or session's end of Copilot CLI, Cline or OpenCode in Claude
    Code's keys (plus ``said``: an error's text, ``outcome``: how the event
    says it ended); ``doc`` itself for the other CLIs; None when it is no
    such event (a tool call, or nothing these CLIs send)."""
    read = _SESSION_READERS.get(cli)
    if read is None:  # what only these readers state is never taken from another CLI's input
        return {k: v for k, v in doc.items() if k not in _STATED}
    return read(doc)


REPLIES: dict[str, Callable[[str, str, str], dict[str, Any]]] = {
    "copilot": _copilot_reply,
    "opencode": _opencode_reply,
    "cline": _cline_reply,
}

__all__ = [
    "BLOCKED_EXIT",
    "BLOCK_STATUS",
    "CLINE_ENDS",
    "CLINE_OUTCOMES",
    "CLINE_SHELL_EVENT",
    "CLINE_SHELL_TOOL",
    "CLINE_SHUTDOWN",
    "REPLIES",
    "SCRIPTS_KEY",
    "blocked_script",
    "normalized",
    "session_doc",
]
