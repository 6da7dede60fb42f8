"""Codex CLI as the matrix runs it: a ``config.toml`` in a ``CODEX_HOME`` of
its own naming the fake Responses API as its model provider, its telemetry
(``[otel]``: log records, and its own spans, over OTLP/HTTP protobuf) aimed
at serve with prompts included, and the PreToolUse hook when a test asks
for one; ``codex exec --json``, whose first event names the session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, hook_command, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.served import Matrix

MODEL = "gpt-5-codex"


def _toml(s: str) -> str:
    return json.dumps(s)  # a JSON string is a TOML basic string


def _exporter(url: str) -> str:
    return f'{{ otlp-http = {{ endpoint = {_toml(url)}, protocol = "binary" }} }}'


def config(api: FakeModelAPI, run_id: str, matrix: Matrix | None, hook: bool) -> str:
    """``telemetry`` (``matrix``): as a user sets it in config.toml (the
    launcher sets its own with ``-c``)."""
    lines = [
        f"model = {_toml(MODEL)}",
        'model_provider = "matrix"',
        "",
        "[model_providers.matrix]",
        'name = "the matrix fake"',
        f"base_url = {_toml(api.base_url(run_id, '/v1'))}",
        'wire_api = "responses"',
        # An error is the script's answer: asking again gets the same.
        "request_max_retries = 0",
        "stream_max_retries = 0",
    ]
    if matrix is not None:
        lines += [
            "",
            "[otel]",
            "log_user_prompt = true",
            f"exporter = {_exporter(matrix.endpoint + '/v1/logs')}",
            f"trace_exporter = {_exporter(matrix.endpoint + '/v1/traces')}",
        ]
    if hook:
        lines += [
            "",
            "[[hooks.PreToolUse]]",
            'matcher = "*"',
            "[[hooks.PreToolUse.hooks]]",
            'type = "command"',
            f"command = {_toml(hook_command('codex'))}",
            "timeout = 200",
        ]
    return "\n".join(lines) + "\n"


def env(
    home: Path,
    api: FakeModelAPI,
    run_id: str,
    matrix: Matrix | None = None,
    *,
    hook: bool = False,
    **extra: str,
) -> dict[str, str]:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(config(api, run_id, matrix, hook))
    out = base_env(home)
    out.update(CODEX_HOME=str(codex_home), **extra)
    return out


def argv(bin_dir: Path, prompt: str, hook: bool = False) -> list[str]:
    # workspace-write: a command the hook lets through may change the
    # working folder (read-only, the default, would stop it itself).
    out = [str(bin_dir / "codex"), "exec", "--json", "--skip-git-repo-check", "-s", "workspace-write"]
    if hook:
        # Hooks run only when trusted; otherwise they are skipped silently.
        out.append("--dangerously-bypass-hook-trust")
    return [*out, prompt]


def codex(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    *,
    hook: bool = False,
    launcher: dict[str, str] | None = None,
) -> Ran:
    return run(argv(bin_dir, prompt, hook), environ, work, launcher)


def codex_started(bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str]) -> Running:
    return start(argv(bin_dir, prompt, True), environ, work, launcher)


def session_of(ran: Ran) -> str:
    ids = {ln["thread_id"] for ln in ran.lines() if ln.get("type") == "thread.started"}
    assert len(ids) == 1, f"one thread.started in the events, got {ids}\n{ran.said()}"
    return str(ids.pop())


def events(ran: Ran, kind: str) -> list[dict[str, Any]]:
    return [ln for ln in ran.lines() if ln.get("type") == kind]


def said(ran: Ran) -> list[str]:
    """The agent's messages, in order."""
    return [
        str(ln["item"].get("text"))
        for ln in events(ran, "item.completed")
        if isinstance(ln.get("item"), dict) and ln["item"].get("type") == "agent_message"
    ]


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("codex_exec", session_of(ran))
