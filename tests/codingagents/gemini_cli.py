"""Gemini CLI as the matrix runs it: API-key auth against the fake Gemini
API, one attempt per call (its default retries run past 110 s), telemetry
to serve as OTLP/JSON over HTTP with prompts, and ``--yolo`` (in headless
mode without it the shell tool is not offered at all)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.codingagents.agents import Ran, base_env, run
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


def gemini(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Ran:
    argv = [str(bin_dir / "gemini"), "-p", prompt, "-m", MODEL, "--yolo", "--output-format", "json"]
    return run(argv, environ, work, launcher)


def session_of(ran: Ran) -> str:
    start = ran.stdout.find("{")
    # Its OTLP exporter's complaints (serve answers 404 to metrics) may follow on stdout.
    doc = json.JSONDecoder().raw_decode(ran.stdout[start:])[0] if start >= 0 else {}
    sid = doc.get("session_id")
    assert isinstance(sid, str) and sid, ran.said()
    return sid
