"""Codex CLI: Claude Code's hook contract, with its own allow.

``PreToolUse`` hooks in ``config.toml`` (``$CODEX_HOME``'s and the
project's ``.codex``); no timeout documented for command hooks, so 600 s
as Claude Code's. Its allow of a ``PreToolUse`` is an empty object: it
reads ``permissionDecision: allow`` as "Hook failed: unsupported
permissionDecision: allow" (0.169) and lets the call go on under its own
approval policy. It names its service by its mode (``codex_exec``,
``codex_tui``, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, Verdict


class Codex(Adapter):
    name = "codex"
    title = "Codex"
    binaries = ("codex",)
    services = ("codex_exec", "codex_tui", "codex_cli_rs", "codex-cli", "codex")
    namespace = "codex"
    session_events = frozenset({"UserPromptSubmit", "Stop", "Interrupt", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    # apply_patch names its files in the patch (its `input`).
    path_keys = frozenset({"path", "input", "patch"})
    hook_timeout_s = 600.0

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        if answer == "allow" and event != "PermissionRequest":
            return {}
        return super().reply(event, answer, reason)

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        codex_home = Path(env.get("CODEX_HOME") or home / ".codex")
        return [codex_home / "config.toml", Path(cwd) / ".codex" / "config.toml"]


ADAPTER = Codex()
