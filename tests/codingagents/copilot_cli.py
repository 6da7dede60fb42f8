"""GitHub Copilot CLI as the matrix runs it: its platform binary (the npm
package's loader does not pass signals on), offline (``COPILOT_OFFLINE``)
with the fake Chat Completions API as its own model provider (no GitHub
login), its OTel spans to serve (OTLP/HTTP protobuf) with prompts and tool
arguments captured by its settings, and ``--allow-all-tools`` (in ``-p``
mode a shell call that writes is refused otherwise). Every run shares one
``XDG_CACHE_HOME``: Copilot CLI unpacks 235 MB of itself there on its
first run."""

from __future__ import annotations

import fcntl
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, hook_command, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.npm_install import MODULES
from tests.codingagents.served import Matrix

MODEL = "gpt-4.1"
SHELL = "bash"
# Shared by every run and worker (inside node_modules: npm ci starts it afresh).
CACHE = MODULES / ".cache" / "copilot-xdg"


def binary() -> Path:
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), "x64"
    )
    return MODULES / "@github" / f"copilot-{system}-{arch}" / "copilot"


def warm() -> Path:
    """The shared cache, unpacked once (one process at a time)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / "copilot-xdg.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (CACHE / ".unpacked").exists():
            env = base_env(CACHE.parent / "copilot-warm-home")
            env.update(XDG_CACHE_HOME=str(CACHE), COPILOT_OFFLINE="true")
            subprocess.run([str(binary()), "--version"], env=env, capture_output=True, timeout=300, check=True)
            (CACHE / ".unpacked").write_text("1")
    return CACHE


def env(
    home: Path, api: FakeModelAPI, run_id: str, matrix: Matrix | None = None, capture: bool = True
) -> dict[str, str]:
    """``matrix``: telemetry aimed at serve, as a user sets it (the launcher
    sets its own); ``capture``: prompts and tool arguments in its spans
    (``telemetry.capture`` of its settings)."""
    (home / ".copilot").mkdir(parents=True, exist_ok=True)
    if capture:
        settings = {"telemetry": {"capture": {"prompts": True, "toolArguments": True}}}
        (home / ".copilot" / "settings.json").write_text(json.dumps(settings))
    out = base_env(home)
    out.update(
        COPILOT_OFFLINE="true",
        COPILOT_PROVIDER_BASE_URL=api.base_url(run_id, "/v1"),
        COPILOT_PROVIDER_API_KEY="sk-matrix-dummy",
        COPILOT_MODEL=MODEL,
        XDG_CACHE_HOME=str(warm()),
    )
    if matrix is not None:
        out.update(OTEL_EXPORTER_OTLP_ENDPOINT=matrix.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    return out


def add_hook(home: Path, timeout_s: int = 200, command: str | None = None) -> Path:
    """``spanvisor hook copilot`` as a user-level ``preToolUse`` hook (its
    ``timeoutSec``; 30 when unset, after which Copilot CLI runs the call)."""
    folder = home / ".copilot" / "hooks"
    folder.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {"type": "command", "bash": command or hook_command("copilot"), "timeoutSec": timeout_s}
    path = folder / "spanvisor.json"
    path.write_text(json.dumps({"version": 1, "hooks": {"preToolUse": [entry]}}))
    return path


def argv(prompt: str, fmt: str | None = "json") -> list[str]:
    return [str(binary()), "-p", prompt, "--allow-all-tools", *(["--output-format", fmt] if fmt else [])]


def copilot(
    work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None, fmt: str | None = "json"
) -> Ran:
    return run(argv(prompt, fmt), environ, work, launcher)


def copilot_started(
    work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Running:
    return start(argv(prompt), environ, work, launcher)


def session_of(ran: Ran) -> str:
    ids = {ln["sessionId"] for ln in ran.lines() if ln.get("type") == "result" and isinstance(ln.get("sessionId"), str)}
    assert len(ids) == 1, f"one result line naming the session, got {ids}\n{ran.said()}"
    return ids.pop()


def said(ran: Ran) -> list[str]:
    """The assistant's messages with text, in order."""
    return [
        str(ln["data"]["content"])
        for ln in ran.lines()
        if ln.get("type") == "assistant.message" and isinstance(ln.get("data"), dict) and ln["data"].get("content")
    ]


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("github-copilot", session_of(ran))
