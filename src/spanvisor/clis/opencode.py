"""OpenCode: no command hooks; spanvisor's plugin is its hook.

The plugin (``spanvisor/_assets/opencode/spanvisor-gate.js``) sends Claude
Code's stdin keys and reads ``{"decision": "allow|deny", "reason": …}``;
any other outcome (no answer, a non-zero status, a timeout, no spanvisor
to run) makes the plugin throw, which blocks the call. It hands its own
limit to the hook as ``--cli-timeout`` (600 s), so no settings file gives
one. It sends one ``SessionEnd`` per session when OpenCode shuts down,
saying how its last turn ended (``last_turn``: ``complete``, ``error``,
``cancelled`` or ``open``; ``error``: the API's message). Its file tools
name their paths ``filePath``.
"""

from __future__ import annotations

from typing import Any

from spanvisor.clis.adapter import Adapter, Verdict, option, said

TURNS = ("complete", "error", "cancelled", "open")


class OpenCode(Adapter):
    name = "opencode"
    title = "OpenCode"
    binaries = ("opencode",)
    services = ("opencode",)
    namespace = "opencode"
    session_events = frozenset({"SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    path_keys = frozenset({"filePath", "path", "patchText"})
    hook_timeout_s = 600.0

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if "tool_name" in doc or doc.get("hook_event_name") != "SessionEnd":
            return None
        last = doc.get("last_turn")
        return {
            "session_id": doc.get("session_id"),
            "hook_event_name": "SessionEnd",
            "outcome": last if last in TURNS else None,
            "said": said(doc.get("error")),
        }

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        # No telemetry of its own to aim: the launcher reads what it prints.
        if "run" not in argv[1:2]:
            return argv, "passthrough"
        fmt = option(argv, "--format")
        if fmt is None:  # json lines; the launcher prints the text parts, as its text output does
            return [argv[0], "run", "--format", "json", *argv[2:]], "opencode-text"
        return argv, "opencode-json" if fmt == "json" else "passthrough"

    def hook_setup(self, command: str, timeout_s: int) -> None:
        return None  # its gate is a file spanvisor ships (spanvisor assets export writes it)

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        return {"decision": answer, "reason": reason}


ADAPTER = OpenCode()
