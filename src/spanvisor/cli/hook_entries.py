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
    "gate_command",
    "gate_commands",
    "spanvisor_path",
    "weaknesses",
]
