"""The gate's hook entry as an operator installs it, and how to tell one
that can fail open.

Two things make an installed hook weaker than the gate: a command that is
not an absolute path (a bare ``spanvisor`` outside the CLI's ``PATH``
exits 127, and Codex and Qwen Code then run the call; Claude Code does
too unless the entry says ``"onFailure": "block"``), and a hook that takes
what it decides from its environment, which a repository's
``.claude/settings.json`` ``env`` block can set (``--locked``,
:mod:`.hook_config`). :func:`claude_code_settings` writes the entry with
neither weakness (``spanvisor assets export`` writes it out, for Claude
Code's managed settings); :func:`weaknesses` names them in an installed
entry (``spanvisor check``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from typing import Any

# Where the exported entry looks for the operator's policy (root-owned,
# beside Claude Code's managed settings: not the agent's to write).
POLICY_PATH = "/etc/spanvisor/hook-policy.toml"
TIMEOUT_S = 900


def spanvisor_path() -> str:
    """The absolute path of this installation's ``spanvisor`` command."""
    beside = os.path.join(os.path.dirname(sys.executable), "spanvisor")
    if os.access(beside, os.X_OK):
        return os.path.abspath(beside)
    found = shutil.which("spanvisor")
    return os.path.abspath(found) if found else os.path.abspath(sys.argv[0])


def gate_command(cli: str, binary: str | None = None, policy: str = POLICY_PATH) -> str:
    """The gate's hook command for ``cli``: this installation's absolute
    path, ``--locked``, the operator's policy."""
    return shlex.join([binary or spanvisor_path(), "hook", cli, "--locked", "--policy", policy])


def claude_code_command(binary: str | None = None, policy: str = POLICY_PATH) -> str:
    return gate_command("claude-code", binary, policy)


def claude_code_settings(binary: str | None = None, policy: str = POLICY_PATH) -> dict[str, Any]:
    """Claude Code settings holding the gate's ``PreToolUse`` hook: the
    absolute command, ``--locked``, and ``"onFailure": "block"``."""
    entry = {"type": "command", "command": claude_code_command(binary, policy), "timeout": TIMEOUT_S}
    entry["onFailure"] = "block"
    return {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}}


def gate_commands(settings: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The gate's command hooks in a Claude Code settings document: (the
    event, the entry) for each whose command runs ``spanvisor hook``."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    hooks = settings.get("hooks")
    if not isinstance(hooks, Mapping):
        return out
    for event, groups in hooks.items():
        for group in groups if isinstance(groups, list) else []:
            inner = group.get("hooks") if isinstance(group, Mapping) else None
            for entry in inner if isinstance(inner, list) else []:
                if isinstance(entry, Mapping) and entry.get("type") == "command" and _is_gate(entry.get("command")):
                    out.append((str(event), entry))
    return out


def _is_gate(command: Any) -> bool:
    try:
        words = shlex.split(command) if isinstance(command, str) else []
    except ValueError:
        return False
    return len(words) >= 2 and os.path.basename(words[0]) == "spanvisor" and words[1] == "hook"


def claude_code_findings(env: Mapping[str, str], cwd: str) -> tuple[list[str], list[str]]:
    """``spanvisor check``'s look at the gate's entries in Claude Code's
    settings files (the user's, the project's, its local ones, the
    managed ones): (warnings, what passed). Nothing when no file holds one."""
    import json

    from spanvisor.gate.clitimeout import settings_files

    warned: list[str] = []
    ok: list[str] = []
    for path in settings_files("claude-code", {k: v for k, v in env.items() if not k.startswith("SPANVISOR_")}, cwd):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        for event, entry in gate_commands(doc) if isinstance(doc, Mapping) else []:
            weak = weaknesses(entry)
            where = f"Claude Code's {event} hook in {path}"
            warned += [f"{where}: {w}" for w in weak]
            if not weak:
                ok.append(f"{where}: an absolute path, --locked, onFailure block")
    return warned, ok


def installed_findings(env: Mapping[str, str], cwd: str) -> tuple[list[str], list[str]]:
    """``spanvisor check``'s look at every other CLI's settings that its
    adapter names (the user's, the project's, the system's): for each gate
    entry, what makes it fail open (a command that is not an absolute path,
    or not there; one that takes its policy from its environment), and whose
    file it is (a file its user may change protects against mistakes, not
    against a hostile agent of that user); and a CLI on PATH whose settings
    hold no gate at all. (warnings, what passed). Claude Code's entries are
    :func:`claude_code_findings`'; OpenCode's plugin is check_opencode's."""
    from pathlib import Path

    from spanvisor.clis import registry
    from spanvisor.gate.clitimeout import read_settings, settings_files

    clean = {k: v for k, v in env.items() if not k.startswith("SPANVISOR_")}
    warned: list[str] = []
    ok: list[str] = []
    for adapter in registry.every():
        on_path = [b for b in adapter.binaries if shutil.which(b, path=env.get("PATH"))]
        if adapter.hook_folders and on_path:  # Cline: nowhere out of its user's reach
            warned.append(
                f"{adapter.title} ({on_path[0]} on PATH) runs hooks only from folders its user and the repository "
                f"write ({', '.join(adapter.hook_folders)}): its gate guards against mistakes, not a hostile agent"
            )
        if adapter.name == "claude-code" or adapter.hook_setup("spanvisor hook", TIMEOUT_S) is None:
            continue  # Claude Code: its own look (onFailure too); a hook of its own file: not in settings
        gated = False
        for path in settings_files(adapter.name, clean, cwd):
            for command, _ in adapter.hook_timeouts(read_settings(path)):
                if not _is_gate(command):
                    continue
                gated = True
                where = f"{adapter.title}'s hook in {path}"
                weak = command_weaknesses(command)
                warned += [f"{where}: {w}" for w in weak]
                if not weak:
                    ok.append(f"{where}: an absolute path, locked{_whose(Path(path))}")
        if on_path and not gated:
            warned.append(
                f"{adapter.title} ({on_path[0]} on PATH): none of its settings runs the gate, so outside "
                f"`spanvisor run` its tool calls are not asked (spanvisor gate install, or spanvisor assets export)"
            )
    return warned, ok


def command_weaknesses(command: str) -> list[str]:
    """What makes a gate command fail open or decide by what a repository
    can set, whatever the CLI; empty when nothing does."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ["its command cannot be read as a command line"]
    out = []
    if words and not os.path.isabs(words[0]):
        out.append(
            f"its command {words[0]!r} is not an absolute path (not found on the CLI's PATH, it exits 127 "
            "and some CLIs then run the call)"
        )
    elif words and not os.access(words[0], os.X_OK):
        out.append(f"its command {words[0]} is not there or not executable (the hook cannot start)")
    if "--locked" not in words and "--gate" not in words:
        out.append("it is not --locked (a repository's settings or the session's environment can change its policy)")
    return out


def _whose(path: Any) -> str:
    """'' for a file only root may change; else who may, and what that means."""
    try:
        st = path.stat()
    except OSError:
        return ""
    if st.st_uid == 0 and not st.st_mode & 0o022:
        return ""
    return (
        f"; its file is not root's alone (uid {st.st_uid}, mode {st.st_mode & 0o777:04o}): it guards against "
        "mistakes, not against a hostile agent of a user who may change it (spanvisor gate install)"
    )


def weaknesses(entry: Mapping[str, Any]) -> list[str]:
    """What makes an installed gate entry fail open, or decide by what a
    repository can set; empty when nothing does."""
    words = shlex.split(str(entry.get("command") or ""))
    out = []
    if words and not os.path.isabs(words[0]):
        out.append(
            f"its command {words[0]!r} is not an absolute path (not found on the CLI's PATH, it exits 127 "
            "and the call runs)"
        )
    if entry.get("onFailure") != "block":
        out.append('it lacks "onFailure": "block" (a hook that fails or times out lets the call run)')
    if "--locked" not in words:
        out.append("it is not --locked (a repository's settings env can change its policy)")
    return out


__all__ = [
    "POLICY_PATH",
    "claude_code_command",
    "claude_code_findings",
    "claude_code_settings",
    "command_weaknesses",
    "gate_command",
    "gate_commands",
    "installed_findings",
    "spanvisor_path",
    "weaknesses",
]
