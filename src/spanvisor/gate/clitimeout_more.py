"""Where Qwen Code and GitHub Copilot CLI give the gate's hook its timeout
(:mod:`spanvisor.gate.clitimeout` reads the other CLIs'). OpenCode has no
hook settings (spanvisor's plugin hands its own limit to the hook as
``--cli-timeout``); Cline's limit is fixed (120 s).

* Qwen Code 0.24: ``settings.json`` (the user's ``~/.qwen``, the project's
  ``.qwen``, the system's), Claude Code's layout; ``timeout`` in seconds,
  where 1000 and more still mean milliseconds (its older unit).
* Copilot CLI: ``$COPILOT_HOME/hooks/*.json`` (``~/.copilot``), the
  repository's ``.github/hooks/*.json`` and the ``hooks`` of its
  ``settings.json``: ``{"preToolUse": [{"type": "command", "bash": …,
  "timeoutSec": N}]}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# Qwen Code reads a timeout this large or larger as milliseconds.
QWEN_MS_FROM = 1000.0
MAX_HOOK_FILES = 64


def qwen_files(env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
    system = Path(env.get("QWEN_CODE_SYSTEM_SETTINGS_PATH") or "/etc/qwen-code/settings.json")
    user = Path(env.get("QWEN_HOME") or home / ".qwen")
    return [user / "settings.json", Path(cwd) / ".qwen" / "settings.json", system]


def copilot_files(env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
    copilot_home = Path(env.get("COPILOT_HOME") or home / ".copilot")
    out = [copilot_home / "settings.json"]
    for folder in (copilot_home / "hooks", Path(cwd) / ".github" / "hooks"):
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))[:MAX_HOOK_FILES]
        except OSError:
            continue
        out.extend(folder / n for n in names)
    return out


def qwen_seconds(raw: float) -> float:
    return raw / 1000.0 if raw >= QWEN_MS_FROM else raw


def copilot_entries(doc: Any) -> Iterator[tuple[str, Any]]:
    """(command, timeoutSec) of each ``preToolUse`` command entry."""
    hooks = doc.get("hooks") if isinstance(doc, dict) else None
    entries = hooks.get("preToolUse") if isinstance(hooks, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("type", "command") != "command":
            continue
        command = entry.get("bash") or entry.get("command")
        if isinstance(command, str):
            yield command, entry.get("timeoutSec")


__all__ = ["QWEN_MS_FROM", "copilot_entries", "copilot_files", "qwen_files", "qwen_seconds"]
