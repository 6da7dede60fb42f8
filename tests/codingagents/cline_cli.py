"""Cline as the matrix runs it: its platform binary (the ``cline`` package
installs it behind a Node wrapper and ~340 SDK packages the binary does not
use), ``cline --json PROMPT`` against the fake Chat Completions API as an
``openai-compatible`` provider of its settings, its session kept in its
own process (no background hub left running), telemetry off (it can only
send to its vendor), and spanvisor's ``PreToolUse`` hook (the wrapper
script spanvisor ships) when a test asks for it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from spanvisor.clis.cline.launch import HOOK
from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, run, start
from tests.codingagents.fake_http import FakeModelAPI

MODEL = "gpt-4.1"
SHELL = "run_commands"
SPANVISOR_BIN = str(Path(sys.executable).with_name("spanvisor"))


def hook_script() -> Path:
    import spanvisor

    return Path(spanvisor.__file__).parent.joinpath("_assets", "cline", HOOK)


def env(home: Path, api: FakeModelAPI, run_id: str) -> dict[str, str]:
    settings = home / ".cline" / "data" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    provider = {
        "provider": "openai-compatible",
        "apiKey": "sk-matrix-dummy",
        "model": MODEL,
        "baseUrl": api.base_url(run_id, "/v1"),
    }
    doc: dict[str, Any] = {
        "version": 1,
        "lastUsedProvider": "openai-compatible",
        "modes": {},
        "providers": {
            "openai-compatible": {
                "settings": provider,
                "updatedAt": "2026-11-25T00:00:00.000Z",
                "tokenSource": "manual",
            }
        },
    }
    (settings / "providers.json").write_text(json.dumps(doc))
    (settings / "global-settings.json").write_text(json.dumps({"telemetryOptOut": True, "autoUpdateEnabled": False}))
    out = base_env(home)
    out.update(CLINE_SESSION_BACKEND_MODE="local", CLINE_NO_AUTO_UPDATE="1")
    return out


def add_hook(home: Path, script: Path | None = None) -> Path:
    """spanvisor's ``PreToolUse`` wrapper (or ``script``) as the user's Cline hook."""
    folder = home / ".cline" / "hooks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "PreToolUse"
    shutil.copyfile(script or hook_script(), path)
    path.chmod(0o755)
    return path


def argv(bin_dir: Path, prompt: str, json_lines: bool = True) -> list[str]:
    return [str(bin_dir / "cline"), *(["--json"] if json_lines else []), prompt]


def cline(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    launcher: dict[str, str] | None = None,
    json_lines: bool = True,
) -> Ran:
    return run(argv(bin_dir, prompt, json_lines), environ, work, launcher)


def cline_started(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Running:
    return start(argv(bin_dir, prompt), environ, work, launcher)


def session_of(ran: Ran) -> str:
    ids = {ln["taskId"] for ln in ran.lines() if isinstance(ln.get("taskId"), str)}
    assert len(ids) == 1, f"one task id in its lines, got {ids}\n{ran.said()}"
    return ids.pop()


def result_of(ran: Ran) -> dict[str, Any]:
    [result] = [ln for ln in ran.lines() if ln.get("type") == "run_result"]
    return result


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its task id in the CLI's namespace."""
    return session_task_id("cline", session_of(ran))
