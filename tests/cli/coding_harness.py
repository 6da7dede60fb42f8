"""What the hook and launcher tests share: a receiver (OTLP/HTTP with the
control API) on its own loop thread in front of a real pipeline, and
``spanvisor hook`` run through ``main()`` with a CLI's JSON on stdin."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from spanvisor.config import Config
from spanvisor.events import Checkpoint, TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.testing import InMemorySink

TOKEN = "hooks-s3cret"

# Each CLI's hook input, as FIELD-NOTES records them from the real CLIs.
CLAUDE_PRE = {
    "session_id": "0f3c2a1e-5b7d-4c11-9a0e-8d2f6b1c3e77",
    "transcript_path": "/tmp/transcript.jsonl",
    "cwd": "/work/repo",
    "prompt_id": "p-1",
    "permission_mode": "default",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "git push origin main", "description": "push"},
    "tool_use_id": "toolu_01ABC",
}
CLAUDE_PERMISSION = {**CLAUDE_PRE, "hook_event_name": "PermissionRequest", "tool_use_id": "toolu_02DEF"}
CODEX_PRE = {
    "session_id": "019a-codex-session",
    "transcript_path": None,
    "cwd": "/work/repo",
    "hook_event_name": "PreToolUse",
    "model": "gpt-5",
    "turn_id": "turn-1",
    "tool_name": "Bash",
    "tool_input": {"command": "rm -rf build"},
    "tool_use_id": "call_1",
}
GEMINI_BEFORE = {
    "session_id": "gem-session-1",
    "hook_event_name": "BeforeTool",
    "timestamp": "2026-11-23T23:00:00.000Z",
    "tool_name": "run_shell_command",
    "tool_input": {"command": "ls -la", "description": "list"},
}


class Serve:
    """A receiver on its own loop thread in front of a real pipeline."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        config = Config.load(
            env={
                "SPANVISOR_DATA_DIR": str(data_dir),
                "SPANVISOR_OTLP_BIND": "127.0.0.1",
                "SPANVISOR_OTLP_HTTP_PORT": str(port),
                "SPANVISOR_OTLP_GRPC_PORT": "off",
                "SPANVISOR_ADMIN_PORT": "off",
                "SPANVISOR_OTLP_TOKEN": TOKEN,
                "SPANVISOR_JOURNAL": "off",
            },
            extra=None,
        )
        self.sink = InMemorySink()
        self.pipeline = Pipeline(config=config, sinks=[self.sink], path="receiver").start()
        assert self.pipeline.wait_ready(300), "the pipeline did not start"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(self.pipeline, ReceiverSettings.from_config(config))
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(300)
        self.base = f"http://127.0.0.1:{self.receiver.http_port}"

    def task(self, task_id: str) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.base}/v1/control/tasks/{task_id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(req, timeout=20) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc

    def cancel(self, task_id: str, comment: str = "wrong branch") -> dict[str, Any]:
        """alice cancels the task through the control API: its answer (a
        refusal raises, as urllib does for a 409)."""
        body = json.dumps({"action": "cancel", "actor": "alice", "comment": comment}).encode()
        req = urllib.request.Request(
            f"{self.base}/v1/control/tasks/{task_id}/decisions",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc

    def checkpoints(self, task_id: str) -> list[Checkpoint]:
        return [e for e in self.sink.for_task(task_id) if isinstance(e, Checkpoint)]

    def finished(self, task_id: str) -> TaskFinished | None:
        return next((e for e in self.sink.for_task(task_id) if isinstance(e, TaskFinished)), None)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(self.pipeline.shutdown), self.loop).result(300)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


FAKE_CLAUDE = Path(__file__).with_name("fake_claude.py")


def fake_claude(tmp_path: Path) -> Path:
    """An executable ``claude`` in ``tmp_path/bin`` that runs fake_claude.py."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "claude"
    exe.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FAKE_CLAUDE)!r}, run_name='__main__')\n")
    exe.chmod(0o755)
    return exe


def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in __import__("os").environ if n.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path / "cli"))


def hook(cli: str, payload: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    """``spanvisor hook CLI ARGS`` with ``payload`` (JSON, or raw bytes) on
    stdin: (exit status, the JSON answer, stderr). stdout and stderr are
    this call's own, so other threads' prints do not mix in."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(raw))
    old = sys.stdin
    sys.stdin = stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["hook", cli, *args])
    finally:
        sys.stdin = old
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("{")]
    assert len(lines) == 1, f"one JSON answer on stdout, got {out.getvalue()!r}"
    return code, json.loads(lines[0]), err.getvalue()


def task_of(cli: str, session_id: str) -> str:
    """The task of a session with no launcher: its session id in its CLI's
    namespace (``claude-code:<session id>``), as the hook and serve name it."""
    from spanvisor.clis import registry
    from spanvisor.receiver.codingagents.ids import session_task_id

    return session_task_id(registry.need(cli).service, session_id)


CLAUDE_RESULT = '{"type": "result", "subtype": "success", "is_error": false, "result": "Done."}'


def launch_claude(
    serve: Serve, work: Path, tmp: Path, task: str, does: str, *options: str, env: Mapping[str, str] | None = None
) -> None:
    """``spanvisor run`` in ``work`` in front of a fake ``claude -p`` (a shell
    script: ``does``, then Claude Code's result line), to ``serve``; it must exit 0."""
    claude = tmp / "bin" / "claude"
    claude.parent.mkdir(exist_ok=True)
    claude.write_text(f"#!/bin/sh\n{does}\necho '{CLAUDE_RESULT}'\n")
    claude.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_", "GIT_"))}
    environ["SPANVISOR_DATA_DIR"] = str(tmp / "data")
    environ.update(env or {})
    spanvisor = str(Path(sys.executable).parent / "spanvisor")
    launcher = [spanvisor, "run", "--task-id", task, "--endpoint", serve.base, "--token", TOKEN, *options]
    done = subprocess.run(
        [*launcher, "--", str(claude), "-p", "fix the tests"],
        cwd=work,
        check=False,
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    assert done.returncode == 0, done
