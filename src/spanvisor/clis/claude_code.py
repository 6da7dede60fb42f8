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

from collections.abc import Mapping
from pathlib import Path

from spanvisor.clis.adapter import Adapter


class ClaudeCode(Adapter):
    name = "claude-code"
    title = "Claude Code"
    binaries = ("claude",)
    services = ("claude-code",)
    namespace = "claude-code"
    tool_events = ("PreToolUse", "PermissionRequest")
    session_events = frozenset({"UserPromptSubmit", "Stop", "StopFailure", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    path_keys = frozenset({"file_path", "path", "notebook_path"})
    hook_timeout_s = 600.0

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        user = Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude")
        project = Path(env.get("CLAUDE_PROJECT_DIR") or cwd) / ".claude"
        managed = (
            Path("/Library/Application Support/ClaudeCode/managed-settings.json"),
            Path("/etc/claude-code/managed-settings.json"),
        )
        return [user / "settings.json", project / "settings.json", project / "settings.local.json", *managed]


ADAPTER = ClaudeCode()
