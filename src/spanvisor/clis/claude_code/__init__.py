"""Claude Code: the hook contract the others took.

``PreToolUse`` and ``PermissionRequest`` command hooks: stdin JSON with
``session_id``, ``hook_event_name``, ``tool_name``, ``tool_input`` (and
``tool_use_id``, ``cwd``); the answer ``{"hookSpecificOutput":
{"hookEventName": "PreToolUse", "permissionDecision": "allow|deny",
"permissionDecisionReason": …}}`` or, for ``PermissionRequest``, its
``decision`` ``{"behavior": "allow|deny", "message": …}``; exit status 2
blocks (any other non-zero status is a non-blocking error: the call would
run). Its hooks' timeout (600 s unless set) is in its settings files: the
user's, the project's and its local ones, and the managed ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, HookSetup, command_text, default, hook_entries, option
from spanvisor.clis.checks import is_gate
from spanvisor.clis.ends import SessionEnds


class ClaudeCode(Adapter):
    name = "claude-code"
    title = "Claude Code"
    binaries = ("claude",)
    services = ("claude-code",)
    namespace = "claude-code"
    records = f"{__name__}.records"
    output = f"{__name__}.output"
    notifies = True
    asks_at_terminal = True
    ends = SessionEnds(names_turn=True, no_prompt_completes=True)
    tool_events = ("PreToolUse", "PermissionRequest")
    session_events = frozenset({"UserPromptSubmit", "Stop", "StopFailure", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    path_keys = frozenset({"file_path", "path", "notebook_path"})
    hook_timeout_s = 600.0
    # Claude Code gives its SessionEnd hooks 1.5 s in all unless an entry
    # sets a timeout (2.1.330: the budget is the largest entry's, up to
    # 60 s), then kills them and exits. The hook answers at once, but a
    # Python process starting on a loaded machine can take longer than
    # 1.5 s, and a hook killed before its answer never ends the task. The
    # budget only bounds a hook that hangs: Claude Code exits as soon as
    # the hook answered.
    session_end_timeout_s = 10

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        user = Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude")
        project = Path(env.get("CLAUDE_PROJECT_DIR") or cwd) / ".claude"
        managed = (
            Path("/Library/Application Support/ClaudeCode/managed-settings.json"),
            Path("/etc/claude-code/managed-settings.json"),
        )
        return [user / "settings.json", project / "settings.json", project / "settings.local.json", *managed]

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        # Its managed settings: they win over the user's, the project's and
        # the command line's, and disableAllHooks elsewhere cannot drop them.
        return Path("/etc/claude-code/managed-settings.json")

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        # "onFailure": "block": a hook that fails to start or times out
        # blocks the call (without it, Claude Code runs it).
        setup: dict[str, Any] = {}
        for event in (*self.tool_events[:1], *sorted(self.session_events)):
            entry: dict[str, Any] = {"type": "command", "command": command}
            if event in self.tool_events:
                entry.update(timeout=timeout_s, onFailure="block")
            elif event in self.end_events:
                entry["timeout"] = self.session_end_timeout_s
            setup[event] = [{"matcher": "*", "hooks": [entry]}]
        # allowManagedHooksOnly (read from managed settings only): the user's,
        # a repository's and a plugin's hooks do not run, so none of them can
        # rewrite a call's input (updatedInput) after the gate allowed it.
        where = "its managed settings (/etc/claude-code/managed-settings.json), which no repository overrides"
        managed = {"allowManagedHooksOnly": True, "hooks": setup}
        return HookSetup("managed-settings.json", json.dumps(managed, indent=2) + "\n", where)

    def aim_telemetry(self, argv: list[str], env: dict[str, str], endpoint: str, tool_details: bool) -> list[str]:
        env.update(
            CLAUDE_CODE_ENABLE_TELEMETRY="1",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        )
        # Each event within a second, not after its default 5 s, unless the
        # user chose an interval.
        default(env, "OTEL_LOGS_EXPORT_INTERVAL", "1000")
        default(env, "OTEL_METRIC_EXPORT_INTERVAL", "10000")
        if tool_details:  # each tool call's input, so a step reads Bash(ls -la)
            default(env, "OTEL_LOG_TOOL_DETAILS", "1")
        else:
            env["OTEL_LOG_TOOL_DETAILS"] = "0"
        return argv

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        if "-p" not in argv and "--print" not in argv:
            return argv, "passthrough"
        fmt = option(argv, "--output-format")
        if fmt is None:  # the launcher reads stream-json and prints the text, as its text output does
            extra = ["--output-format", "stream-json"] + ([] if "--verbose" in argv else ["--verbose"])
            return [argv[0], *extra, *argv[1:]], "claude-code-text"
        return argv, {"stream-json": "claude-code-stream", "json": "claude-code-json"}.get(fmt, "passthrough")

    def entry_weaknesses(self, doc: Any, command: str) -> list[str]:
        # Without "onFailure": "block" a hook that fails to start or times
        # out lets the call run.
        entries = [e for e in hook_entries(doc, self.tool_events) if command_text(e.get("command")) == command]
        weak = []
        if any(e.get("onFailure") != "block" for e in entries):
            weak.append('it lacks "onFailure": "block" (a hook that fails or times out lets the call run)')
        # Not a way to fail open, but a session's end lost: its SessionEnd
        # hook, killed after 1.5 s, never ends the task (liveness does).
        ends = [e for e in hook_entries(doc, tuple(self.end_events)) if is_gate(command_text(e.get("command")))]
        if any(not isinstance(e.get("timeout"), int | float) or e["timeout"] < 5 for e in ends):
            weak.append(
                f'its SessionEnd entry has no "timeout" of 5 s or more: Claude Code kills it after 1.5 s, and on '
                f'a loaded machine the session\'s task then ends only by liveness ("timeout": '
                f"{self.session_end_timeout_s})"
            )
        return weak

    def with_http_hook(self, argv: list[str], url: str, timeout_s: float, folder: str) -> list[str] | None:
        from spanvisor.clis.claude_code import http_hook

        return http_hook.with_hook(argv, url, timeout_s, folder)

    def transcript_turn(self, path: str, prompt: str) -> tuple[str, str | None] | None:
        del prompt  # the transcript's last turn is the prompt's: its SessionEnd named it
        from spanvisor.clis.claude_code import transcript

        return transcript.last_turn(path)


ADAPTER = ClaudeCode()
