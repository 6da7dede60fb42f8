"""Codex CLI: Claude Code's hook contract, with its own allow.

``PreToolUse`` hooks in ``config.toml`` (``$CODEX_HOME``'s and the
project's ``.codex``), run only once trusted, and in its managed
requirements (``/etc/codex/requirements.toml``), which run untrusted and,
with ``allow_managed_hooks_only``, alone: no user's, project's or plugin's
hook runs beside them (0.169, proven in tests/codingagents/test_gate_install.py).
No timeout documented for command hooks, so 600 s as Claude Code's. Its allow of a ``PreToolUse`` is an empty object: it
reads ``permissionDecision: allow`` as "Hook failed: unsupported
permissionDecision: allow" (0.169) and lets the call go on under its own
approval policy. It names its service by its mode (``codex_exec``,
``codex_tui``, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import Adapter, HookSetup, Verdict
from spanvisor.clis.ends import SessionEnds


class Codex(Adapter):
    name = "codex"
    title = "Codex"
    binaries = ("codex",)
    services = ("codex_exec", "codex_tui", "codex_cli_rs", "codex-cli", "codex")
    namespace = "codex"
    records = f"{__name__}.records"
    output = f"{__name__}.output"
    # An API error fires SessionEnd with its turn open; SIGTERM kills it before any hook.
    asks_at_terminal = True
    ends = SessionEnds(open_turn=("error", "ended before its turn finished (its output says why)"))
    session_events = frozenset({"UserPromptSubmit", "Stop", "Interrupt", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    # apply_patch names its files in the patch (its `input`).
    path_keys = frozenset({"path", "input", "patch"})
    hook_timeout_s = 600.0

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        if answer == "allow" and event != "PermissionRequest":
            return {}
        return super().reply(event, answer, reason)

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        lines: list[str] = []
        for event in (*self.tool_events, *sorted(self.session_events)):
            lines += [
                f"[[hooks.{event}]]",
                f"[[hooks.{event}.hooks]]",
                'type = "command"',
                f"command = {_toml_str(command)}",
            ]
            if event in self.tool_events:
                lines.append(f"timeout = {timeout_s}")
            lines.append("")
        where = "$CODEX_HOME/config.toml (~/.codex), which it runs once the hook is trusted (spanvisor run trusts it)"
        return HookSetup("config.toml", "\n".join(lines), where)

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        # Admin-enforced requirements: no config.toml, profile or -c override wins over them.
        return Path("/etc/codex/requirements.toml")

    def system_setup(self, command: str, timeout_s: int, place: Path | None = None) -> HookSetup | None:
        setup = self.hook_setup(command, timeout_s)
        assert setup is not None
        # Read from requirements only (in config.toml it is ignored): the
        # user's, a repository's and a plugin's hooks then do not run, so
        # none can rewrite a call the gate allowed.
        text = "allow_managed_hooks_only = true\n\n" + setup.text
        where = "its managed requirements (/etc/codex/requirements.toml), which no user or repository overrides"
        return HookSetup("requirements.toml", text, where)

    def aim_telemetry(self, argv: list[str], env: dict[str, str], endpoint: str, tool_details: bool) -> list[str]:
        # -c overrides on top of the user's own config.toml (kept as is).
        # The token is not among them: a command line is readable by every
        # local user (/proc/<pid>/cmdline). Its OTLP/HTTP exporter
        # (opentelemetry-otlp 0.31) adds OTEL_EXPORTER_OTLP_HEADERS, which
        # the launcher sets, to every request.
        extra: list[str] = []
        for key, path in (("exporter", "logs"), ("trace_exporter", "traces"), ("metrics_exporter", "metrics")):
            value = f'{{ otlp-http = {{ endpoint = {_toml_str(f"{endpoint}/v1/{path}")}, protocol = "binary" }} }}'
            extra += ["-c", f"otel.{key}={value}"]
        return [argv[0], *extra, *argv[1:]]

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        return argv, "codex-json" if "--json" in argv else "passthrough"

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        codex_home = Path(env.get("CODEX_HOME") or home / ".codex")
        return [codex_home / "config.toml", Path(cwd) / ".codex" / "config.toml", Path("/etc/codex/requirements.toml")]

    def prepare_run(self, argv: list[str], env: dict[str, str], cwd: str) -> tuple[list[str], str | None, str | None]:
        from spanvisor.clis.codex import trust

        given, said = trust.trusted(argv, env, cwd)
        # It may skip every hook silently: said on the task too.
        warning = "⚠ Codex's hooks are not trusted: the gate may not run" if said and trust.FLAG not in given else None
        return given, said, warning


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


ADAPTER = Codex()
