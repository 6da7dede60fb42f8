"""Factory Droid (``droid``, the ``@factory/cli`` binary): Claude Code's
hook contract, read from its 0.225 binary and checked with it.

``PreToolUse`` command hooks in its settings (``hooks.PreToolUse[].hooks[]``,
``timeout`` in seconds, 60 unless set): stdin ``session_id``,
``transcript_path``, ``cwd``, ``permission_mode``, ``hook_event_name``,
``tool_name``, ``tool_input``; Claude Code's deny JSON, or exit status 2,
blocks the call. A hook that cannot start, exits 1 or outlives its timeout
lets the call run, ``"onFailure": "block"`` or not (checked with 0.225.2):
the gate answers before the timeout and exits 0 or 2 on every path, and
its command must be an absolute path. ``droid exec`` fires ``SessionStart``
(its transcript then starts with the session's title, the prompt's: it
names the task), ``Stop`` when a turn ends and ``SessionEnd`` as it exits
(no ``UserPromptSubmit``).

Its settings: ``~/.factory/settings.json``, a repository's
``.factory/settings.json`` and ``settings.local.json``, and its
system-managed file ``/etc/factory/settings.json``: the organisation's
level, read with no login. ``allowManagedHooksOnly`` there (read at that
level only) drops the hooks of every other level, ``hooksDisabled``
included, so ``spanvisor gate install`` writes the gate there with it and
no repository turns the gate off or answers a call before it (without it,
a repository's ``hooks.hooksDisabled`` turns every hook off, and the first
hook to answer wins: ``spanvisor check`` says so).
Its shell tool is ``Execute`` (``command``); its file tools name their
paths ``file_path``, ``directory_path``, ``path`` and ``folder``, and
``ApplyPatch`` its patch ``input``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from spanvisor.clis.adapter import Adapter, HookSetup, option

# Its system-managed settings (its binary's path on Linux): the org level.
SYSTEM = Path("/etc/factory/settings.json")
# The most of a transcript's first line read for its title, and of its end
# read for how its last turn ended.
MAX_TITLE_LINE = 64 * 1024
MAX_TAIL = 256 * 1024
# The title an interactive session starts with before its first prompt, in
# each language its 0.225.2 binary has: no prompt's.
UNTITLED = frozenset(
    {
        "New Session",
        "Nuova sessione",
        "\u65b0\u3057\u3044\u30bb\u30c3\u30b7\u30e7\u30f3",
        "\u65b0\u4f1a\u8bdd",
        "\uc0c8 \uc138\uc158",
    }
)
# Its turn outcomes (its 0.225.2 binary) that are no failure; any other is.
TURN_OUTCOMES = {
    "completed": "complete",
    "spec_handoff": "complete",
    "cancelled": "cancelled",
    "process_exit": "cancelled",
}


class Droid(Adapter):
    name = "droid"
    title = "Factory Droid"
    binaries = ("droid",)
    services = ("droid",)
    namespace = "droid"
    output = f"{__name__}.output"
    stream = f"{__name__}.stream"
    session_events = frozenset({"SessionStart", "UserPromptSubmit", "Stop", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    path_keys = frozenset({"file_path", "directory_path", "path", "folder", "input"})
    # `droid exec --help`'s and its hidden ones (0.225.2); -w/--worktree's value is optional.
    value_options = frozenset(
        {
            *("-o", "--output-format", "--input-format", "-f", "--file", "--auto", "-s", "--session-id", "--fork"),
            *("-m", "--model", "-r", "--reasoning-effort", "--spec-model", "--spec-reasoning-effort"),
            *("--only-tools", "--add-tools", "--remove-tools", "--cwd", "--settings", "--worktree-dir", "--tag"),
            *("--log-group-id", "--worker-model", "--worker-reasoning-effort", "--validator-model"),
            *("--validator-reasoning-effort", "--append-system-prompt", "--append-system-prompt-file"),
            *("--tool-execution-mode", "--enabled-tools", "--additional-tools", "--disabled-tools"),
            *("--restrict-tools", "--request-id", "--depth", "--init-session-id", "--calling-session-id"),
            *("--calling-tool-use-id", "--session-title"),
        }
    )
    hook_timeout_s = 60.0
    # The first hook with a permissionDecision decides (managed, then
    # --settings, project, user); exit status 2 denies after any of them.
    deny_status = 2

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        read = super().read_session(doc)
        if read is not None and read.get("hook_event_name") == "SessionEnd":
            path = read.get("transcript_path")
            said = last_outcome(path) if isinstance(path, str) else None
            return {**read, "outcome": said[0], "said": said[1]} if said is not None else read
        if read is None or read.get("hook_event_name") != "SessionStart":
            return read
        # `droid exec` fires no UserPromptSubmit: its session opens here,
        # named by the title its transcript starts with (the prompt's). An
        # interactive session's is a stand-in ("New Session"): it opens at
        # its first UserPromptSubmit, which names it.
        path = read.get("transcript_path")
        named = title(path) if isinstance(path, str) else None
        return {**read, "hook_event_name": "UserPromptSubmit", "prompt": named} if named is not None else read

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        home = Path(env.get("FACTORY_HOME_OVERRIDE") or home)  # its stand-in for HOME
        project = Path(cwd) / ".factory"
        return [home / ".factory" / "settings.json", project / "settings.json", project / "settings.local.json", SYSTEM]

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        del env
        return SYSTEM

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        setup = super().hook_setup(command, timeout_s)
        assert setup is not None
        hooks = json.loads(setup.text)["hooks"]
        # allowManagedHooksOnly: no other level's hooks run (none answers a
        # call first, none rewrites its input), and no other level's
        # hooksDisabled counts; this file's own is said false.
        doc = {"allowManagedHooksOnly": True, "hooks": {**hooks, "hooksDisabled": False}}
        where = f"its system-managed settings ({SYSTEM}), whose hooks alone run"
        return HookSetup(SYSTEM.name, json.dumps(doc, indent=2) + "\n", where)

    def entry_weaknesses(self, doc: Any, command: str) -> list[str]:
        del command
        hooks = doc.get("hooks") if isinstance(doc, dict) else None
        if isinstance(hooks, dict) and hooks.get("hooksDisabled") is True:
            return ['"hooksDisabled": true beside it turns every hook of that file off']
        return []

    def check(self, env: Mapping[str, str], cwd: Path) -> tuple[list[str], list[str], list[str]]:
        from spanvisor.clis.droid import check

        return check.look(self, env, cwd, SYSTEM)

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        # No telemetry spanvisor reads: the launcher reads what `droid exec` prints.
        if "exec" not in argv[1:2] or "--list-tools" in argv or option(argv, "--input-format") is not None:
            return argv, "passthrough"  # no run to read (a list; its input's own protocol)
        fmt = option(argv, "-o", "--output-format", joined=True)
        if fmt is None:  # json lines; the launcher prints the answer, as its text output does
            return [argv[0], "exec", "-o", "stream-json", *argv[2:]], "droid-text"
        return argv, "droid-stream" if fmt == "stream-json" else "passthrough"

    def stream_model(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
        from spanvisor.clis.droid import stream

        return stream.model_of(argv, env)


def _regular(path: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (a FIFO or a
    device named as the transcript would block or never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def title(path: str) -> str | None:
    """The title a session's transcript starts with (its first line,
    ``session_start``: the prompt's), read once at its start."""
    if not path.endswith(".jsonl"):
        return None
    try:
        with _regular(path) as f:
            first = json.loads(f.readline(MAX_TITLE_LINE))
    except (OSError, ValueError, RecursionError):
        return None
    said = first.get("title") if isinstance(first, dict) and first.get("type") == "session_start" else None
    return said if isinstance(said, str) and said.strip() and said.strip() not in UNTITLED else None


def last_outcome(path: str) -> tuple[str, str | None] | None:
    """How its last turn ended, as its transcript's last
    ``agent_turn_outcome`` says (written before ``SessionEnd``, after
    ``Stop``, which fires after a failed turn too): (outcome, what it said
    of a failure: the error it showed its user, else the reason)."""
    if not path.endswith(".jsonl"):
        return None
    try:
        with _regular(path) as f:
            f.seek(max(0, f.seek(0, 2) - MAX_TAIL))
            lines = f.read(MAX_TAIL).splitlines()
    except OSError:
        return None
    outcome: str | None = None
    for raw in reversed(lines):
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(line, dict):
            continue
        if outcome is None and line.get("type") == "agent_turn_outcome" and isinstance(line.get("reason"), str):
            outcome = line["reason"]
            state = TURN_OUTCOMES.get(outcome, "error")
            if state != "error":
                return state, None
        elif outcome is not None and (shown := _shown_error(line)) is not None:
            return "error", shown
    return ("error", f"its turn ended: {outcome}") if outcome is not None else None


def _shown_error(line: dict[str, Any]) -> str | None:
    """The text of a message only its user sees (an API error's), not a hook's record."""
    message = line.get("message") if line.get("type") == "message" else None
    if not isinstance(message, dict) or message.get("visibility") != "user_only" or "hookEventName" in message:
        return None
    parts = message.get("content")
    texts = [p.get("text") for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []
    said = " ".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
    return said or None


ADAPTER = Droid()
