"""Qwen Code as the matrix runs it: its OpenAI-compatible auth against the
fake Chat Completions API, one attempt per call (a 500 is retried for a
minute and more), telemetry to serve as OTLP/JSON over HTTP (chunked) with
prompts, ``--yolo`` (headless without it the shell tool is not offered),
and the ``PreToolUse`` hook when a test asks for one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, hook_command, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.served import Matrix

MODEL = "qwen3-coder-plus"
SHELL = "run_shell_command"


def env(home: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, telemetry: bool = True) -> dict[str, str]:
    """``telemetry``: in settings.json, as a user sets it (the launcher sets its own in the environment)."""
    settings: dict[str, Any] = {
        "security": {"auth": {"selectedType": "openai"}},
        "model": {"name": MODEL, "generationConfig": {"maxRetries": 0}},
        "general": {"maxAttempts": 1, "enableAutoUpdate": False},
        # Else it reports usage to its vendor's host (there is none here).
        "privacy": {"usageStatisticsEnabled": False},
    }
    if telemetry:
        settings["telemetry"] = {
            "enabled": True,
            "target": "local",
            "otlpEndpoint": matrix.endpoint,
            "otlpProtocol": "http",
            "logPrompts": True,
        }
    (home / ".qwen").mkdir(parents=True, exist_ok=True)
    (home / ".qwen" / "settings.json").write_text(json.dumps(settings))
    out = base_env(home)
    out.update(
        OPENAI_BASE_URL=api.base_url(run_id, "/v1"),
        OPENAI_API_KEY="sk-matrix-dummy",
        OPENAI_MODEL=MODEL,
        QWEN_CODE_TRUST_WORKSPACE="true",
        QWEN_CODE_SUPPRESS_YOLO_WARNING="1",
    )
    return out


def add_hook(home: Path, timeout_s: int = 200, command: str | None = None) -> None:
    """``spanvisor hook qwen`` as a ``PreToolUse`` hook in the user's settings
    (its ``timeout`` in seconds: Qwen Code 0.24 reads 1000 and more as ms)."""
    path = home / ".qwen" / "settings.json"
    settings: dict[str, Any] = json.loads(path.read_text())
    hook = {"type": "command", "command": command or hook_command("qwen"), "timeout": timeout_s}
    settings["hooks"] = {"PreToolUse": [{"matcher": "*", "hooks": [hook]}]}
    path.write_text(json.dumps(settings))


def argv(bin_dir: Path, prompt: str, fmt: str | None = "json") -> list[str]:
    return [str(bin_dir / "qwen"), "-p", prompt, "--yolo", *(["--output-format", fmt] if fmt else [])]


def qwen(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    launcher: dict[str, str] | None = None,
    fmt: str | None = "json",
) -> Ran:
    return run(argv(bin_dir, prompt, fmt), environ, work, launcher)


def qwen_started(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Running:
    return start(argv(bin_dir, prompt), environ, work, launcher)


def messages(ran: Ran) -> list[dict[str, Any]]:
    """Its ``--output-format json``: one array of messages (or JSON lines)."""
    start_at = ran.stdout.find("[")
    if start_at >= 0:
        try:
            doc = json.JSONDecoder().raw_decode(ran.stdout[start_at:])[0]
        except ValueError:
            doc = None
        if isinstance(doc, list):
            return [m for m in doc if isinstance(m, dict)]
    return ran.lines()


def session_of(ran: Ran) -> str:
    ids = {m["session_id"] for m in messages(ran) if isinstance(m.get("session_id"), str)}
    assert len(ids) == 1, f"one session id in its output, got {ids}\n{ran.said()}"
    return ids.pop()


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("qwen-code", session_of(ran))
