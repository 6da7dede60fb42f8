"""Factory Droid as the matrix runs it: ``droid exec --auto high`` with a
custom model of the user's settings (``customModels``, no login) pointed
at the fake Chat Completions API, nothing else reached, and ``spanvisor
hook droid`` in its settings when a test asks for it (Claude Code's
layout: ``PreToolUse``, and its ``Stop`` and ``SessionEnd``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, hook_command, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.npm_install import MODULES
from tests.codingagents.script import Turn, Usage, tool

# Its linux-x64 binary, pinned alone (tests/codingagents/npm/package.json
# says why): no wrapper, so no link in node_modules/.bin.
BINARY = MODULES / "@factory" / "cli-linux-x64" / "bin" / "droid"
MODEL = "gpt-4.1"
CUSTOM = "custom:fake-0"
SHELL = "Execute"


def shell(command: str, usage: Usage | None = None) -> Turn:
    """A shell call as its model asks for it (it refuses one without a risk level)."""
    args = {"command": command, "riskLevelReason": "a command the test runs", "riskLevel": "low"}
    return tool(SHELL, usage, **args) if usage is not None else tool(SHELL, **args)


def env(home: Path, api: FakeModelAPI, run_id: str) -> dict[str, str]:
    folder = home / ".factory"
    folder.mkdir(parents=True, exist_ok=True)
    model = {
        "model": MODEL,
        "displayName": "fake",
        "baseUrl": api.base_url(run_id, "/v1"),
        "apiKey": "sk-matrix-dummy",
        "provider": "generic-chat-completion-api",
    }
    (folder / "settings.json").write_text(json.dumps({"customModels": [model]}))
    # Its air-gapped mode: it reaches for none of Factory's services (a run
    # takes 0.5 s instead of 6.5 s of waiting on them; its hooks, settings
    # and system-managed file are read as before).
    return {**base_env(home), "FACTORY_AIRGAP_ENABLED": "true"}


def add_hooks(home: Path, timeout_s: int = 200, command: str | None = None) -> None:
    """``spanvisor hook droid`` before every tool call, at its session's
    start (which names its task) and at its turn's and session's end."""
    path = home / ".factory" / "settings.json"
    settings: dict[str, Any] = json.loads(path.read_text())
    hook = {"type": "command", "command": command or hook_command("droid")}
    settings["hooks"] = {
        "PreToolUse": [{"matcher": "*", "hooks": [{**hook, "timeout": timeout_s}]}],
        "SessionStart": [{"hooks": [hook]}],
        "Stop": [{"hooks": [hook]}],
        "SessionEnd": [{"hooks": [hook]}],
    }
    path.write_text(json.dumps(settings))


def argv(bin_dir: Path, prompt: str, fmt: str | None = "stream-json") -> list[str]:
    del bin_dir  # its binary is not linked there (BINARY)
    return [str(BINARY), "exec", "--auto", "high", "-m", CUSTOM, *(["-o", fmt] if fmt else []), prompt]


def droid(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    launcher: dict[str, str] | None = None,
    fmt: str | None = "stream-json",
) -> Ran:
    return run(argv(bin_dir, prompt, fmt), environ, work, launcher)


def droid_started(bin_dir: Path, work: Path, environ: dict[str, str], prompt: str) -> Running:
    return start(argv(bin_dir, prompt), environ, work, None)


def session_of(ran: Ran) -> str:
    ids = {ln["session_id"] for ln in ran.lines() if isinstance(ln.get("session_id"), str)}
    assert len(ids) == 1, f"one session in its lines, got {ids}\n{ran.said()}"
    return ids.pop()


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("droid", session_of(ran))
