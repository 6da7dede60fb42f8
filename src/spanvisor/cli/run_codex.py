"""Codex CLI's hook trust, as ``spanvisor run`` handles it.

Codex runs a configured hook only once it is trusted (its content hash
recorded in Codex's own config, by ``/hooks`` in its interface) or with
``--dangerously-bypass-hook-trust``; an untrusted hook is skipped
**silently**, so the gate would not stand in front of any call. Codex's
flag is meant for "automation that already vets hook sources": the
launcher vets them. When every hook command in the user's Codex config and
the project's is ``spanvisor hook`` (the gate), the launcher passes the
flag and says so once; when another command is among them, it does not
(that hook would run unreviewed too) and says that the gate may not run.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FLAG = "--dangerously-bypass-hook-trust"
_SUBCOMMANDS = ("exec", "e")


def hook_commands(env: Mapping[str, str], cwd: str) -> list[str]:
    """Every hook command in the user's and the project's Codex config."""
    home = Path(env.get("CODEX_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".codex"))
    found: list[str] = []
    for path in (home / "config.toml", Path(cwd) / ".codex" / "config.toml"):
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found += _commands(doc.get("hooks"))
    return found


def _commands(hooks: Any) -> list[str]:
    out: list[str] = []
    if not isinstance(hooks, dict):
        return out
    for groups in hooks.values():
        for group in groups if isinstance(groups, list) else []:
            for entry in group.get("hooks", []) if isinstance(group, dict) else []:
                command = entry.get("command") if isinstance(entry, dict) else None
                if isinstance(command, str):
                    out.append(command)
                elif isinstance(command, list):
                    out.append(" ".join(str(c) for c in command))
    return out


def is_gate(command: str) -> bool:
    words = command.split()
    return any(os.path.basename(w) in ("spanvisor", "spanvisor.cli") for w in words) and "hook" in words


def trusted(argv: list[str], env: Mapping[str, str], cwd: str) -> tuple[list[str], str | None]:
    """Codex's arguments with the trust flag where the launcher vets every
    hook, and what to tell the user (None: nothing)."""
    if FLAG in argv:
        return argv, None
    commands = hook_commands(env, cwd)
    if not commands:
        return argv, None
    if not all(is_gate(c) for c in commands):
        return argv, (
            "Codex's hooks include commands other than `spanvisor hook`: they are not trusted by the launcher, "
            "so Codex may skip them all silently (the gate would not run). Trust them in Codex (/hooks) or pass "
            f"{FLAG} yourself"
        )
    at = next((i + 1 for i, a in enumerate(argv[1:], 1) if a in _SUBCOMMANDS), 1)
    return [*argv[:at], FLAG, *argv[at:]], f"Codex's hooks are spanvisor's gate: running them with {FLAG}"


__all__ = ["FLAG", "hook_commands", "is_gate", "trusted"]
