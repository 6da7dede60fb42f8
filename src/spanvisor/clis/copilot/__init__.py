"""GitHub Copilot CLI: ``preToolUse`` command hooks.

A ``{"type": "command", "bash": …, "timeoutSec": N}`` entry in
``$COPILOT_HOME/hooks/*.json`` (``~/.copilot``), the repository's
``.github/hooks/*.json`` or the ``hooks`` of its ``settings.json``. Stdin
``sessionId``, ``timestamp``, ``cwd``, ``toolName``, ``toolArgs`` (an
object, or a JSON string), ``toolCallId``, ``traceparent``; the answer
``{"permissionDecision": "allow|deny", "permissionDecisionReason": …}``.
Exit status 1 or 2 blocks too; a hook past its ``timeoutSec`` (30 s when
unset) lets the call run.

A ``preToolUse`` allow also skips Copilot's own permission service: a call
spanvisor allowed (a person in Slack, or a rule) never meets Copilot's
prompt, so the two never both ask. A call whose ``preToolUse`` hooks gave
no answer (the gate's timed out: Copilot lets it go on) next meets the
``permissionRequest`` hooks, before Copilot's prompt and even under
``--allow-all-tools``: the gate's entry there decides it again. Its stdin
names itself (``hookName``: ``permissionRequest``) and says ``sessionId``,
``cwd``, ``toolName``, ``toolInput`` (no call id); the answer
``{"behavior": "allow|deny", "message": …}``; exit status 1 or 2 denies,
a timeout lets the call go on to Copilot's own flow (checked with 1.0.102).

For every user of a machine (``spanvisor gate install``), its policy hooks:
``*.json`` files in ``/etc/github-copilot/policy.d`` in the same format,
loaded before the user's and the repository's hooks, which no setting of
theirs turns off; a file not root's, group or world writable, a symlink,
or naming a relative ``exec`` is skipped (and the call then runs), so the
gate's entry is an absolute ``exec`` with its ``args`` (no shell, no
``PATH``). ``allowManagedHooksOnly`` in its root-owned
``/etc/github-copilot/managed-settings.json`` stops the user's and the
repository's hooks (one of them could rewrite a call the gate allowed).
Checked with the pinned 1.0.102: a missing hook command blocks the call,
a hook past its ``timeoutSec`` lets it run.

Its turn and session events name no event in their input; they are told
apart by their keys: ``userPromptSubmitted`` (``prompt``), ``agentStop``
(``stopReason``), ``errorOccurred`` (``error`` ``{message, name}``,
``errorContext``) and ``sessionEnd`` (``reason``: ``complete``,
``error``, ``abort``, …).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, HookSetup, Verdict, json_files, option, positive, said
from spanvisor.clis.ends import SessionEnds

# Where it reads settings for every user: root's files only.
POLICY_ROOT = Path("/etc/github-copilot")
POLICY_FILE = "spanvisor.json"


class Copilot(Adapter):
    name = "copilot"
    title = "Copilot CLI"
    binaries = ("copilot",)
    services = ("github-copilot",)
    namespace = "copilot"
    records = f"{__name__}.records"
    output = f"{__name__}.output"
    ends = SessionEnds(
        turns={"userPromptSubmitted": "open", "agentStop": "complete", "errorOccurred": "error"},
        turn_error="Copilot CLI reported an error",
        error_reasons=frozenset({"error"}),
    )
    tool_events = ("preToolUse", "permissionRequest")
    session_events = frozenset({"userPromptSubmitted", "agentStop", "errorOccurred", "sessionEnd"})
    end_events = frozenset({"sessionEnd"})
    session_keys = ("sessionId",)
    # Its bundle is packed: its documented `path`.
    path_keys = frozenset({"path", "paths"})
    hook_timeout_s = 30.0

    def read_call(self, doc: dict[str, Any]) -> dict[str, Any]:
        # Its permissionRequest input names itself, and says toolInput, not toolArgs.
        asked = doc.get("hookName") == "permissionRequest" or ("toolInput" in doc and "toolArgs" not in doc)
        args = doc.get("toolInput" if asked else "toolArgs", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                args = {"arguments": args}  # a tool whose arguments are one string: kept whole
        return {
            "session_id": doc.get("sessionId"),
            "hook_event_name": "permissionRequest" if asked else "preToolUse",
            "tool_name": doc.get("toolName"),
            "tool_input": args,
            "tool_use_id": doc.get("toolCallId"),
            "cwd": doc.get("cwd"),
        }

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        if "toolName" in doc or "toolArgs" in doc or "toolInput" in doc:
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
        if event == "permissionRequest":
            return {"behavior": answer, **({"message": reason} if answer == "deny" else {})}
        return {"permissionDecision": answer, "permissionDecisionReason": reason}

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        where = "$COPILOT_HOME/hooks/ (~/.copilot/hooks/)"
        return HookSetup("spanvisor.json", self._hooks(command, timeout_s, run_by_shell=True), where)

    def _hooks(self, command: str, timeout_s: int, run_by_shell: bool) -> str:
        """Its hook file: ``command`` for each tool and session event, as a
        shell line (``bash``) or an absolute program and its arguments
        (``exec``, what a policy hook must name)."""
        words = shlex.split(command)
        hooks: dict[str, Any] = {}
        for event in (*self.tool_events, *sorted(self.session_events)):
            entry: dict[str, Any] = {"type": "command"}
            if run_by_shell:
                entry["bash"] = command
            else:
                entry.update(exec=words[0], args=words[1:])
            entry["timeoutSec"] = timeout_s if event in self.tool_events else 30
            hooks[event] = [entry]
        return json.dumps({"version": 1, "hooks": hooks}, indent=2) + "\n"

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        # Its managed settings, beside the policy hooks' folder (the gate's hook
        # is a file of its own there: system_companions).
        del env
        return POLICY_ROOT / "managed-settings.json"

    def system_setup(self, command: str, timeout_s: int, place: Path | None = None) -> HookSetup | None:
        where = f"its policy hooks ({POLICY_ROOT}/policy.d/{POLICY_FILE}), which no user or repository turns off"
        return HookSetup("managed-settings.json", json.dumps({"allowManagedHooksOnly": True}, indent=2) + "\n", where)

    def system_companions(self, command: str, timeout_s: int) -> dict[str, str]:
        return {f"policy.d/{POLICY_FILE}": self._hooks(command, timeout_s, run_by_shell=False)}

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
            *json_files(POLICY_ROOT / "policy.d"),
            copilot_home / "settings.json",
            *json_files(copilot_home / "hooks"),
            *json_files(Path(cwd) / ".github" / "hooks"),
        ]

    def hook_timeouts(self, doc: Any) -> Iterator[tuple[str, float | None]]:
        hooks = doc.get("hooks") if isinstance(doc, dict) else None
        entries = [
            e for event in self.tool_events for e in _listed(hooks.get(event) if isinstance(hooks, dict) else None)
        ]
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("type", "command") != "command":
                continue
            command = entry.get("bash") or entry.get("command")
            program, args = entry.get("exec"), entry.get("args", [])
            if isinstance(program, str) and isinstance(args, list) and all(isinstance(a, str) for a in args):
                command = shlex.join([program, *args])
            if isinstance(command, str):
                yield command, positive(entry.get("timeoutSec"))


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


ADAPTER = Copilot()
