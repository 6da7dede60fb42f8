"""pi (``@mariozechner/pi-coding-agent``): no command hooks; spanvisor's
extension is its hook.

The extension (``spanvisor/_assets/pi/spanvisor-gate.js``) answers pi's
``tool_call`` event: it sends Claude Code's stdin keys (the session id is
pi's own, ``ctx.sessionManager.getSessionId()``) and reads
``{"decision": "allow|deny", "reason": …}``; anything else blocks the
call (``{block: true, reason}``), and an allowed call's input is frozen so
that no extension pi runs after it rewrites what was allowed. It hands
its own limit to the hook as ``--cli-timeout`` (600 s). It sends the
session's first prompt (``UserPromptSubmit``) and, at pi's
``session_shutdown``, one ``SessionEnd`` saying how its last run ended
(``last_turn``: ``complete``, ``error``, ``cancelled`` or ``open``;
``error``: the API's message). pi fires no end on SIGTERM or SIGINT.

pi runs extensions given with ``-e`` first, then the repository's
``.pi/extensions`` (loaded without asking) and the user's
``~/.pi/agent/extensions`` (``$PI_CODING_AGENT_DIR``), and any its
settings name; it reads no file only root writes (checked with the pinned
0.73.1): its gate holds against mistakes, not a hostile agent. A
repository's extension is code pi runs at its start.

Its tools: ``bash`` (``command``), ``read``, ``write``, ``edit``,
``grep``, ``find``, ``ls`` (``path``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import option
from spanvisor.clis.plugin import PluginAdapter

EXTENSION_FILE = "spanvisor-gate.js"


def shipped_extension() -> str:
    from importlib import resources  # not on the gate's path: only the launcher gives the file

    return resources.files("spanvisor").joinpath("_assets", "pi", EXTENSION_FILE).read_text(encoding="utf-8")


# The spaces its file tools read as a plain space (path-utils.js, 0.73.1).
_SPACES = re.compile("[\u00a0\u2000-\u200a\u202f\u205f\u3000]")


def _expanded(path: str) -> str:
    """A path as pi's file tools open it (its ``expandPath``)."""
    path = _SPACES.sub(" ", path[1:] if path.startswith("@") else path)
    if path == "~" or path.startswith("~/"):
        return os.path.expanduser("~") + path[1:]
    return path


def _terminal_stdin() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


class Pi(PluginAdapter):
    name = "pi"
    title = "pi"
    binaries = ("pi",)
    services = ("pi",)
    namespace = "pi"
    output = f"{__name__}.output"
    stream = f"{__name__}.stream"
    path_keys = frozenset({"path"})
    value_options = frozenset({"--mode", "--provider", "-e", "--extension", "--api-key", "--session", "--session-dir"})
    hook_timeout_s = 600.0
    gate_assets = (
        "spanvisor",
        "_assets/pi",
        "pi's gate extension: copy spanvisor-gate.js to ~/.pi/agent/extensions/ (or pass it with -e)",
    )
    hook_folders = (
        "$PI_CODING_AGENT_DIR/extensions (~/.pi/agent/extensions)",
        ".pi/extensions",
        "its settings' extensions",
    )

    def read_call(self, doc: dict[str, Any]) -> dict[str, Any]:
        # Its file tools open what its expandPath makes of a path: one
        # leading "@" dropped, Unicode spaces made plain, "~" and "~/" its
        # home. The gate judges that path, not the text the model wrote.
        given = doc.get("tool_input")
        if not isinstance(given, dict) or not any(isinstance(given.get(k), str) for k in self.path_keys):
            return doc
        tool_input = {k: (_expanded(v) if k in self.path_keys and isinstance(v, str) else v) for k, v in given.items()}
        return {**doc, "tool_input": tool_input}

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        # No telemetry of its own to aim: the launcher reads what it prints.
        # It runs one prompt and exits with -p, a --mode, or no terminal on
        # its standard input (as under CI); else it is interactive.
        fmt = option(argv, "--mode")
        printing = "-p" in argv or "--print" in argv or fmt is not None or not _terminal_stdin()
        if not printing or fmt == "rpc":
            return argv, "passthrough"
        if fmt is None:  # json lines; the launcher prints the answer, as its text output does
            return [argv[0], "--mode", "json", *argv[1:]], "pi-text"
        return argv, "pi-json" if fmt == "json" else "passthrough"

    def give_gate(self, argv: list[str], env: dict[str, str], folder: str) -> tuple[list[str] | None, str | None, str]:
        from spanvisor.clis.pi import launch

        return launch.give(shipped_extension(), argv, env, folder)

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        del env, home, cwd
        return []  # its gate is an extension, not a settings entry


ADAPTER = Pi()
