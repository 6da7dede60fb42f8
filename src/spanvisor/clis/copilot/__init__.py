"""GitHub Copilot CLI: ``preToolUse`` command hooks.

A ``{"type": "command", "bash": …, "timeoutSec": N}`` entry in
``$COPILOT_HOME/hooks/*.json`` (``~/.copilot``), the repository's
``.github/hooks/*.json`` or the ``hooks`` of its ``settings.json``. Stdin
``sessionId``, ``timestamp``, ``cwd``, ``toolName``, ``toolArgs`` (an
object, or a JSON string), ``toolCallId``, ``traceparent``; the answer
``{"permissionDecision": "allow|deny", "permissionDecisionReason": …}``.
Exit status 1 or 2 blocks too; a hook past its ``timeoutSec`` (30 s when
unset) lets the call run.

Its turn and session events name no event in their input; they are told
apart by their keys: ``userPromptSubmitted`` (``prompt``), ``agentStop``
(``stopReason``), ``errorOccurred`` (``error`` ``{message, name}``,
``errorContext``) and ``sessionEnd`` (``reason``: ``complete``,
``error``, ``abort``, …).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, HookSetup, Verdict, json_files, option, positive, said


class Copilot(Adapter):
    name = "copilot"
    title = "Copilot CLI"
    binaries = ("copilot",)
    services = ("github-copilot",)
    namespace = "copilot"
    records = f"{__name__}.records"
    tool_events = ("preToolUse",)
    session_events = frozenset({"userPromptSubmitted", "agentStop", "errorOccurred", "sessionEnd"})
    end_events = frozenset({"sessionEnd"})
    session_keys = ("sessionId",)
    # Its bundle is packed: its documented `path`.
    path_keys = frozenset({"path", "paths"})
    hook_timeout_s = 30.0

    def read_call(self, doc: dict[str, Any]) -> dict[str, Any]:
        args = doc.get("toolArgs", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                args = {"arguments": args}  # a tool whose arguments are one string: kept whole
        return {
            "session_id": doc.get("sessionId"),
            "hook_event_name": "preToolUse",
            "tool_name": doc.get("toolName"),
            "tool_input": args,
            "tool_use_id": doc.get("toolCallId"),
            "cwd": doc.get("cwd"),
        }

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if "toolName" in doc or "toolArgs" in doc:
            return None
        if "error" in doc or "errorContext" in doc:
            event, text = "errorOccurred", said(doc.get("error"))
        elif "stopReason" in doc:
            event, text = "agentStop", None
        elif "prompt" in doc:
            event, text = "userPromptSubmitted", None
        elif "reason" in doc and "source" not in doc:
            event, text = "sessionEnd", None
        else:
            return None
        return {
            "session_id": doc.get("sessionId"),
            "hook_event_name": event,
            "reason": doc.get("reason"),
            "said": text,
            "prompt": doc.get("prompt") if event == "userPromptSubmitted" else None,
        }

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        return {"permissionDecision": answer, "permissionDecisionReason": reason}

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        hooks: dict[str, Any] = {}
        for event in (*self.tool_events, *sorted(self.session_events)):
            hooks[event] = [
                {"type": "command", "bash": command, "timeoutSec": timeout_s if event in self.tool_events else 30}
            ]
        where = "$COPILOT_HOME/hooks/ (~/.copilot/hooks/)"
        return HookSetup("spanvisor.json", json.dumps({"version": 1, "hooks": hooks}, indent=2) + "\n", where)

    def aim_telemetry(self, argv: list[str], env: dict[str, str], endpoint: str, tool_details: bool) -> list[str]:
        # Its commands reach serve only when the user's settings capture tool
        # arguments (telemetry.capture.toolArguments): the launcher does not
        # turn on OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, which
        # would send every message, file and tool output too.
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
        return argv

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        if "-p" not in argv and "--prompt" not in argv:
            return argv, "passthrough"
        fmt = option(argv, "--output-format")
        if fmt is None:  # json lines; the launcher prints the assistant's messages
            return [argv[0], "--output-format", "json", *argv[1:]], "copilot-text"
        return argv, "copilot-json" if fmt == "json" else "passthrough"

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        copilot_home = Path(env.get("COPILOT_HOME") or home / ".copilot")
        return [
            copilot_home / "settings.json",
            *json_files(copilot_home / "hooks"),
            *json_files(Path(cwd) / ".github" / "hooks"),
        ]

    def hook_timeouts(self, doc: Any) -> Iterator[tuple[str, float | None]]:
        hooks = doc.get("hooks") if isinstance(doc, dict) else None
        entries = hooks.get("preToolUse") if isinstance(hooks, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("type", "command") != "command":
                continue
            command = entry.get("bash") or entry.get("command")
            if isinstance(command, str):
                yield command, positive(entry.get("timeoutSec"))


ADAPTER = Copilot()
