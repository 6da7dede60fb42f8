"""Claude Code as the matrix runs it: its telemetry aimed at serve (log
records over OTLP/HTTP protobuf, prompts and tool inputs included), the
fake Messages API as its model, a settings file with the PreToolUse hook
when a test asks for one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, hook_command, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.served import MODEL, Matrix


def env(home: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, **extra: str) -> dict[str, str]:
    out = base_env(home)
    out.update(
        ANTHROPIC_BASE_URL=api.base_url(run_id),
        ANTHROPIC_API_KEY="sk-ant-matrix-dummy",
        # No update checks, error reports or other lookups: offline.
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_ENABLE_TELEMETRY="1",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=matrix.endpoint,
        OTEL_LOGS_EXPORT_INTERVAL="500",
        OTEL_LOG_USER_PROMPTS="1",
        OTEL_LOG_TOOL_DETAILS="1",
        **extra,
    )
    return out


def hook_settings(path: Path) -> Path:
    settings: dict[str, Any] = {
        "hooks": {
            "PreToolUse": [
                {"matcher": "*", "hooks": [{"type": "command", "command": hook_command("claude-code"), "timeout": 200}]}
            ]
        }
    }
    path.write_text(json.dumps(settings))
    return path


def argv(bin_dir: Path, prompt: str, settings: Path | None = None, launcher: bool = False) -> list[str]:
    out = [str(bin_dir / "claude"), "-p", prompt, "--model", MODEL]
    if not launcher:
        # The launcher adds these itself; alone, the session id is read here.
        out += ["--output-format", "stream-json", "--verbose"]
    if settings is not None:
        out += ["--settings", str(settings)]
    return out


def claude(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    *,
    settings: Path | None = None,
    launcher: dict[str, str] | None = None,
) -> Ran:
    return run(argv(bin_dir, prompt, settings, launcher is not None), environ, work, launcher)


def claude_started(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, settings: Path, launcher: dict[str, str]
) -> Running:
    return start(argv(bin_dir, prompt, settings, True), environ, work, launcher)


def session_of(ran: Ran) -> str:
    ids = {ln["session_id"] for ln in ran.lines() if isinstance(ln.get("session_id"), str)}
    assert len(ids) == 1, f"one session id in the stream, got {ids}\n{ran.said()}"
    return ids.pop()


def result_of(ran: Ran) -> dict[str, Any]:
    [result] = [ln for ln in ran.lines() if ln.get("type") == "result"]
    return result


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("claude-code", session_of(ran))
