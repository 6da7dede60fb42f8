"""pi as the matrix runs it: ``pi --mode json -p PROMPT`` against the fake
Chat Completions API as a provider of its ``models.json``
(``openai-completions``), offline (``PI_OFFLINE``: no version check,
telemetry, package installs or tool downloads), its retries off (a 500 is
one failure, not twelve requests over 20 s), no context files of the
machine's, and spanvisor's gate extension when a test asks for it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from spanvisor.clis.pi import EXTENSION_FILE
from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, run, start
from tests.codingagents.fake_http import FakeModelAPI

MODEL = "gpt-4.1"
SHELL = "bash"
# This install's spanvisor console script: what the extension runs.
SPANVISOR_BIN = str(Path(sys.executable).with_name("spanvisor"))


def extension_path() -> Path:
    import spanvisor

    return Path(spanvisor.__file__).parent.joinpath("_assets", "pi", EXTENSION_FILE)


def env(home: Path, api: FakeModelAPI, run_id: str) -> dict[str, str]:
    agent = home / ".pi" / "agent"
    agent.mkdir(parents=True, exist_ok=True)
    provider: dict[str, Any] = {
        "baseUrl": api.base_url(run_id, "/v1"),
        "api": "openai-completions",
        "apiKey": "sk-matrix-dummy",
        "compat": {"supportsDeveloperRole": False, "supportsReasoningEffort": False},
        "models": [{"id": MODEL, "contextWindow": 32_000, "maxTokens": 4_096}],
    }
    (agent / "models.json").write_text(json.dumps({"providers": {"fake": provider}}))
    (agent / "settings.json").write_text(json.dumps({"retry": {"enabled": False, "provider": {"maxRetries": 0}}}))
    out = base_env(home)
    out.update(PI_OFFLINE="1", NO_PROXY="127.0.0.1,localhost")
    return out


def with_extension(environ: dict[str, str], timeout_s: int | None = None) -> dict[str, str]:
    """spanvisor's extension, as the hooks guide sets it up without the launcher (in pi's extensions folder)."""
    folder = Path(environ["HOME"]) / ".pi" / "agent" / "extensions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / EXTENSION_FILE).write_bytes(extension_path().read_bytes())
    environ["SPANVISOR_BIN"] = SPANVISOR_BIN
    if timeout_s is not None:
        environ["SPANVISOR_PI_TIMEOUT"] = str(timeout_s)
    return environ


def argv(bin_dir: Path, prompt: str, mode: str | None = "json") -> list[str]:
    return [str(bin_dir / "pi"), "--model", f"fake/{MODEL}", "-nc", *(["--mode", mode] if mode else []), "-p", prompt]


def pi(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    launcher: dict[str, str] | None = None,
    mode: str | None = "json",
) -> Ran:
    return run(argv(bin_dir, prompt, mode), environ, work, launcher)


def pi_started(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Running:
    return start(argv(bin_dir, prompt), environ, work, launcher)


def session_of(ran: Ran) -> str:
    ids = {ln["id"] for ln in ran.lines() if ln.get("type") == "session" and isinstance(ln.get("id"), str)}
    assert len(ids) == 1, f"one session in its lines, got {ids}\n{ran.said()}"
    return ids.pop()


def tools(ran: Ran) -> list[dict[str, Any]]:
    """Its finished tool calls: each ``tool_execution_end`` line."""
    return [ln for ln in ran.lines() if ln.get("type") == "tool_execution_end"]


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("pi", session_of(ran))
