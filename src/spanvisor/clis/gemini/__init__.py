"""Gemini CLI: ``BeforeTool`` hooks.

Stdin ``session_id``, ``tool_name``, ``tool_input``, ``timestamp``; the
answer ``{"decision": "allow|deny", "reason": …}``; exit status 2 blocks.
Its hooks' ``timeout`` is in milliseconds (60 s unless set), in its
``settings.json``: the user's, the project's and the system's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, HookSetup, Verdict, command_text, hook_entries, option, positive
from spanvisor.clis.ends import SessionEnds


class Gemini(Adapter):
    name = "gemini"
    title = "Gemini CLI"
    binaries = ("gemini",)
    services = ("gemini-cli",)
    namespace = "gemini-cli"
    records = f"{__name__}.records"
    output = f"{__name__}.output"
    ends = SessionEnds(turns={"BeforeAgent": "open", "AfterAgent": "complete"})
    tool_events = ("BeforeTool",)
    session_events = frozenset({"BeforeAgent", "AfterAgent", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    path_keys = frozenset({"absolute_path", "file_path", "dir_path", "path", "paths", "include"})
    hook_timeout_s = 60.0

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        return {"decision": answer, "reason": reason}

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        system = Path(env.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH") or "/etc/gemini-cli/settings.json")
        return [home / ".gemini" / "settings.json", Path(cwd) / ".gemini" / "settings.json", system]

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        return Path(env.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH") or "/etc/gemini-cli/settings.json")

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        setup: dict[str, Any] = {}
        for event in (*self.tool_events, *sorted(self.session_events)):
            entry: dict[str, Any] = {"type": "command", "command": command}
            if event in self.tool_events:
                entry["timeout"] = timeout_s * 1000  # milliseconds
            setup[event] = [{"matcher": "*", "hooks": [entry]}]
        where = "the system's settings (/etc/gemini-cli/settings.json) or ~/.gemini/settings.json"
        return HookSetup("settings.json", json.dumps({"hooks": setup}, indent=2) + "\n", where)

    def aim_telemetry(self, argv: list[str], env: dict[str, str], endpoint: str, tool_details: bool) -> list[str]:
        env.update(
            GEMINI_TELEMETRY_ENABLED="true",
            GEMINI_TELEMETRY_TARGET="local",
            GEMINI_TELEMETRY_OTLP_ENDPOINT=endpoint,
            GEMINI_TELEMETRY_OTLP_PROTOCOL="http",
        )
        # No interval to set: it (0.61) builds its batch log processor with no
        # settings, and its sdk-logs reads no OTEL_BLRP_* variable: records
        # leave every 5 s, and at exit.
        return argv

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        if "-p" not in argv and "--prompt" not in argv and option(argv, "--prompt") is None:
            return argv, "passthrough"
        fmt = option(argv, "--output-format", "-o")
        if fmt is None:
            return [argv[0], "--output-format", "stream-json", *argv[1:]], "gemini-text"
        return argv, {"stream-json": "gemini-stream", "json": "gemini-json"}.get(fmt, "passthrough")

    def hook_timeouts(self, doc: Any) -> Iterator[tuple[str, float | None]]:
        for entry in hook_entries(doc, self.tool_events):
            ms = positive(entry.get("timeout"))
            yield command_text(entry.get("command")), None if ms is None else ms / 1000.0


ADAPTER = Gemini()
