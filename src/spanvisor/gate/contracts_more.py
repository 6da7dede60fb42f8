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


REPLIES: dict[str, Callable[[str, str, str], dict[str, Any]]] = {
    "copilot": _copilot_reply,
    "opencode": _opencode_reply,
    "cline": _cline_reply,
}

__all__ = [
    "BLOCKED_EXIT",
    "BLOCK_STATUS",
    "CLINE_SHELL_EVENT",
    "CLINE_SHELL_TOOL",
    "REPLIES",
    "SCRIPTS_KEY",
    "blocked_script",
    "normalized",
]
