"""Cline: an executable ``~/.cline/hooks/PreToolUse``.

Stdin ``taskId``, ``hookName``, ``tool_call`` (``id``, ``name``,
``input``), ``workspaceRoots``. Cline runs the call when the hook exits
non-zero, says nothing or outlives its fixed 120 s, and its ``{"cancel":
true}`` stops the whole run; so an allow is ``{"cancel": false}``, a shell
call (``run_commands``) is blocked alone by replacing its commands with one
that fails saying why (``overrideInput``), and any other denied call stops
the run (``cancel``, with the reason): every answer with exit status 0.

Its start: ``~/.cline/hooks/TaskStart`` (``hookName`` ``agent_start``),
which carries no prompt; Cline has written its session's manifest by then
(``~/.cline/data/sessions/<rootSessionId>/<rootSessionId>.json``, its
``prompt`` the task as asked: checked with the pinned 3.0.65), so the
task is named from there (its ``UserPromptSubmit`` fires for its own
reminders, never for the first prompt).

Its ends: ``~/.cline/hooks/TaskComplete``, ``TaskError`` and
``TaskCancel`` with ``hookName`` ``agent_end``, ``agent_error`` (its
``error.message``) and ``agent_abort`` (its ``reason``), each the end of
its task (``taskId``); ``SessionShutdown`` (``session_shutdown``) when its
run stopped without one (a hook's ``{"cancel": true}``).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, Verdict, said
from spanvisor.clis.ends import SessionEnds

SHELL_TOOL = "run_commands"
SCRIPTS_KEY = "commands"
# The event a shell call is answered as (its block replaces the commands).
SHELL_EVENT = "PreToolUse:run_commands"
# What a blocked shell call runs instead: it fails, saying why, and runs nothing else.
BLOCKED_EXIT = 126
_ENDS = {
    "agent_end": "TaskComplete",
    "agent_error": "TaskError",
    "agent_abort": "TaskCancel",
    "session_shutdown": "SessionShutdown",
}
# Its commands that are no run of a task.
_COMMANDS = {"auth", "config", "plugin", "skill", "connect", "mcp", "doctor", "history", "h", "hook", "schedule"}
START = "agent_start"
# The most of its session manifest read for the prompt.
MAX_MANIFEST = 1024 * 1024
# The outcome each of its ends states.
OUTCOMES = {"TaskComplete": "complete", "TaskError": "error", "TaskCancel": "cancelled"}


def first_prompt(doc: dict[str, Any], env: dict[str, str] | None = None) -> str | None:
    """The task as it was asked, from the session manifest Cline wrote
    before its ``TaskStart`` (None when there is none to read: another
    version, another user's home, a session id that is no file name)."""
    context = doc.get("sessionContext")
    root = context.get("rootSessionId") if isinstance(context, dict) else None
    if not isinstance(root, str) or not root or root in (".", "..") or "/" in root or "\\" in root or "\0" in root:
        return None
    e = os.environ if env is None else env
    home = Path(e.get("CLINE_DIR") or Path(e.get("HOME") or os.path.expanduser("~")) / ".cline")
    try:
        with (home / "data" / "sessions" / root / f"{root}.json").open("rb") as f:
            manifest = json.loads(f.read(MAX_MANIFEST))
    except (OSError, ValueError, RecursionError):
        return None
    prompt = manifest.get("prompt") if isinstance(manifest, dict) else None
    return prompt if isinstance(prompt, str) and prompt.strip() else None


class Cline(Adapter):
    name = "cline"
    title = "Cline"
    binaries = ("cline",)
    services = ("cline",)
    namespace = "cline"
    output = f"{__name__}.output"
    gate_assets = (
        "spanvisor",
        "_assets/cline",
        "Cline's gate hook, its start and its ends: copy PreToolUse, TaskStart, TaskComplete, TaskError, TaskCancel, "
        "SessionShutdown to ~/.cline/hooks/ and make them executable",
    )
    # The first end heard is the end; its end hooks run detached as it exits.
    ends = SessionEnds(
        turns={"TaskStart": "open"},
        stopped_by={"SessionShutdown": "stopped its run before its task finished (a hook's cancel, or a shutdown)"},
        first_final=True,
        tries=4,
    )
    stream = f"{__name__}.stream"
    session_events = frozenset({*_ENDS.values(), "TaskStart"})
    end_events = frozenset(_ENDS.values())
    session_keys = ("taskId",)
    path_keys = frozenset({"path", "file_paths", "files", "paths", "input"})
    block_status = 0
    hook_timeout_s = 120.0
    # Every folder the pinned 3.0.65 runs hooks from, each beside the others
    # (read from its bundle: no system-wide one; --hooks-dir only adds one).
    hook_folders = ("~/Documents/Cline/Hooks", "$CLINE_DIR/hooks (~/.cline/hooks)", ".clinerules/hooks", ".cline/hooks")

    def read_call(self, doc: dict[str, Any]) -> dict[str, Any]:
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
            "hook_event_name": SHELL_EVENT if tool == SHELL_TOOL else "PreToolUse",
            "tool_name": tool,
            "tool_input": tool_input,
            "tool_use_id": call.get("id"),
            "cwd": cwd,
        }

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if "tool_call" in doc or "preToolUse" in doc:
            return None
        name = doc.get("hookName")
        if name == START:
            return {"session_id": doc.get("taskId"), "hook_event_name": "TaskStart", "prompt": first_prompt(doc)}
        event = _ENDS.get(name) if isinstance(name, str) else None
        if event is None:
            return None
        text = said(doc.get("error")) if event == "TaskError" else said(doc.get("reason"))
        return {"session_id": doc.get("taskId"), "hook_event_name": event, "outcome": OUTCOMES.get(event), "said": text}

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        # No telemetry of its own to aim: the launcher reads what it prints.
        rest = argv[1:]
        if "-i" in rest or "--tui" in rest or "--acp" in rest or (rest and rest[0] in _COMMANDS):
            return argv, "passthrough"  # interactive, or one of its own commands
        if "--json" in argv:
            return argv, "cline-json"
        return [argv[0], "--json", *argv[1:]], "cline-text"

    def hook_setup(self, command: str, timeout_s: int) -> None:
        return None  # its gate is a file spanvisor ships (spanvisor assets export writes it)

    def give_gate(self, argv: list[str], env: dict[str, str], folder: str) -> tuple[list[str] | None, str | None, None]:
        del folder
        from importlib import resources

        from spanvisor.clis.cline import launch

        shipped = resources.files("spanvisor").joinpath("_assets", "cline", launch.HOOK).read_bytes()
        return launch.give(shipped, argv, env)

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        if answer == "allow":
            return {"cancel": False}
        if event == SHELL_EVENT:
            return {"overrideInput": {SCRIPTS_KEY: [blocked_script(reason)]}, "context": reason}
        return {"cancel": True, "errorMessage": reason}


def blocked_script(reason: str) -> str:
    """The one command a blocked shell call runs: it says why on stderr
    and fails (the reason quoted whole: nothing of it runs)."""
    return f"printf '%s\\n' {shlex.quote(reason)} >&2; exit {BLOCKED_EXIT}"


ADAPTER = Cline()
