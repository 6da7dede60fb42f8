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

from spanvisor.clis.adapter import Adapter, HookSetup, command_text, default, hook_entries, option, positive
from spanvisor.clis.ends import SessionEnds

# Qwen Code reads a timeout this large or larger as milliseconds.
MS_FROM = 1000.0


class Qwen(Adapter):
    name = "qwen"
    title = "Qwen Code"
    binaries = ("qwen",)
    services = ("qwen-code",)
    namespace = "qwen-code"
    records = f"{__name__}.records"
    output = f"{__name__}.output"
    # With a prompt (-p) only Stop fires: no SessionEnd (an API error and a signal fire nothing).
    ends = SessionEnds(headless_last="Stop")
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

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        return Path(env.get("QWEN_CODE_SYSTEM_SETTINGS_PATH") or "/etc/qwen-code/settings.json")

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        setup = super().hook_setup(command, timeout_s)
        where = "the system's settings (/etc/qwen-code/settings.json) or ~/.qwen/settings.json"
        return setup._replace(where=where) if setup is not None else None

    def aim_telemetry(self, argv: list[str], env: dict[str, str], endpoint: str, tool_details: bool) -> list[str]:
        # Protocol http: OTLP/JSON, which serve reads; prompts logged, so the
        # name and steps read as for Gemini CLI.
        env.update(
            QWEN_TELEMETRY_ENABLED="true",
            QWEN_TELEMETRY_TARGET="local",
            QWEN_TELEMETRY_OTLP_ENDPOINT=endpoint,
            QWEN_TELEMETRY_OTLP_PROTOCOL="http",
        )
        default(env, "QWEN_TELEMETRY_LOG_PROMPTS", "true")
        return argv

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        if "-p" not in argv and "--prompt" not in argv:
            return argv, "passthrough"
        fmt = option(argv, "--output-format", "-o")
        if fmt is None:  # Claude Code's stream-json; the launcher prints the result's text
            return [argv[0], "--output-format", "stream-json", *argv[1:]], "qwen-text"
        return argv, "qwen-stream" if fmt == "stream-json" else "passthrough"

    def hook_timeouts(self, doc: Any) -> Iterator[tuple[str, float | None]]:
        for entry in hook_entries(doc, self.tool_events):
            raw = positive(entry.get("timeout"))
            yield command_text(entry.get("command")), None if raw is None else seconds(raw)


def seconds(raw: float) -> float:
    """A Qwen Code hook timeout in seconds."""
    return raw / 1000.0 if raw >= MS_FROM else raw


ADAPTER = Qwen()
