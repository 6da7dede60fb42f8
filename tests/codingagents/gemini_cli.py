"""Gemini CLI as the matrix runs it: API-key auth against the fake Gemini
API, one attempt per call (its default retries run past 110 s), telemetry
to serve as OTLP/JSON over HTTP with prompts, and ``--yolo`` (in headless
mode without it the shell tool is not offered at all)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, hook_command, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.served import Matrix

MODEL = "gemini-2.5-flash"


def env(home: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, telemetry: bool = True) -> dict[str, str]:
    """``telemetry``: in settings.json, as a user sets it (the launcher sets its own in the environment)."""
    settings: dict[str, Any] = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"maxAttempts": 1},
    }
    if telemetry:
        settings["telemetry"] = {
            "enabled": True,
            "target": "local",
            "otlpEndpoint": matrix.endpoint,
            "otlpProtocol": "http",
            "logPrompts": True,
        }
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    out = base_env(home)
    out.update(
        GOOGLE_GEMINI_BASE_URL=api.base_url(run_id),
        GEMINI_API_KEY="matrix-dummy-key",
        GEMINI_CLI_TRUST_WORKSPACE="true",
    )
    return out


def add_hook(home: Path, timeout_s: int = 200, passed: tuple[str, ...] = ()) -> dict[str, Any]:
    """``spanvisor hook gemini --cli-timeout S`` as a ``BeforeTool`` hook in
    the user's settings.json, with the same ``timeout`` (in milliseconds
    there); ``passed``: variables let through the environment redaction
    Gemini CLI applies to hooks when it is on (always under GitHub Actions)."""
    path = home / ".gemini" / "settings.json"
    settings: dict[str, Any] = json.loads(path.read_text())
    command = f"{hook_command('gemini')} --cli-timeout {timeout_s}"
    hook = {"type": "command", "command": command, "timeout": timeout_s * 1000}
    settings["hooks"] = {"BeforeTool": [{"matcher": "*", "hooks": [hook]}]}
    if passed:
        settings["security"]["environmentVariableRedaction"] = {"allowed": list(passed)}
    path.write_text(json.dumps(settings))
    return settings


def argv(bin_dir: Path, prompt: str) -> list[str]:
    return [str(bin_dir / "gemini"), "-p", prompt, "-m", MODEL, "--yolo", "--output-format", "json"]


def gemini(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Ran:
    return run(argv(bin_dir, prompt), environ, work, launcher)


def gemini_started(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Running:
    return start(argv(bin_dir, prompt), environ, work, launcher)


def session_of(ran: Ran) -> str:
    start = ran.stdout.find("{")
    # Its OTLP exporter's complaints (serve answers 404 to metrics) may follow on stdout.
    doc = json.JSONDecoder().raw_decode(ran.stdout[start:])[0] if start >= 0 else {}
    sid = doc.get("session_id")
    assert isinstance(sid, str) and sid, ran.said()
    return sid


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("gemini-cli", session_of(ran))
