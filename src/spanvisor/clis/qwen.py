"""Qwen Code: a Gemini CLI fork that took Claude Code's hook contract.

``PreToolUse`` hooks with Claude Code's stdin and answer. Version 0.24
reads its hooks' ``timeout`` in seconds, where 1000 and more still mean
milliseconds (its older unit); 60 s unless set; in ``settings.json``: the
user's (``~/.qwen``), the project's ``.qwen`` and the system's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, command_text, hook_entries, positive

# Qwen Code reads a timeout this large or larger as milliseconds.
MS_FROM = 1000.0


class Qwen(Adapter):
    name = "qwen"
    title = "Qwen Code"
    binaries = ("qwen",)
    services = ("qwen-code",)
    namespace = "qwen-code"
    # Claude Code's names; in -p runs only Stop fires (the hook ends the
    # session when the CLI then exits).
    session_events = frozenset({"UserPromptSubmit", "Stop", "StopFailure", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    path_keys = frozenset({"absolute_path", "file_path", "dir_path", "path", "paths"})
    hook_timeout_s = 60.0

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        system = Path(env.get("QWEN_CODE_SYSTEM_SETTINGS_PATH") or "/etc/qwen-code/settings.json")
        user = Path(env.get("QWEN_HOME") or home / ".qwen")
        return [user / "settings.json", Path(cwd) / ".qwen" / "settings.json", system]

    def hook_timeouts(self, doc: Any) -> Iterator[tuple[str, float | None]]:
        for entry in hook_entries(doc, self.tool_events):
            raw = positive(entry.get("timeout"))
            yield command_text(entry.get("command")), None if raw is None else seconds(raw)


def seconds(raw: float) -> float:
    """A Qwen Code hook timeout in seconds."""
    return raw / 1000.0 if raw >= MS_FROM else raw


ADAPTER = Qwen()
