"""Claude Code 2.1.330 in its interactive UI with the doc's
``PermissionRequest`` entry (``spanvisor hook claude-code --at-terminal``)
and no ``Notification`` entry: the hook's ``{}`` lets Claude Code's own
dialog show, and the task shows waiting from the hook alone (no 6 s
notification), naming the call from the hook's input; the person's Enter
at the terminal runs it. The real CLI, the real serve, the fake Slack and
the fake model."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents import claude_tty as tty
from tests.codingagents import endhooks as eh
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import Matrix
from tests.codingagents.test_claude_code_waiting import WAIT_S, _row
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(300)]


def permission_request_hooks() -> dict[str, Any]:
    """Claude Code's ``PermissionRequest`` entry from the doc's settings block."""
    block = next(b for b in eh._blocks("json") if '"PermissionRequest"' in b and "--at-terminal" in b)
    hooks: dict[str, Any] = json.loads(eh._ours(block, "claude-code"))["hooks"]
    return hooks


def test_the_permission_request_shows_the_task_waiting_while_the_dialog_asks(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(
        uuid.uuid4().hex[:12],
        Script([tool("Bash", command="touch asked.txt", description="make a file"), text("Done.")]),
    )
    home, work = tmp_path / "home", tmp_path / "w"
    tty.first_run_done(home, work)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"hooks": {**eh.claude_hooks(), **permission_request_hooks()}}))
    env = cc.env(home, matrix, anthropic, run_id, SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    name = f"make a file ({run_id})"
    term = tty.Terminal(tty.argv(cli_bin, name, settings), env, work)
    try:
        waiting = wait_until(
            lambda: (r := _row(matrix, name)) is not None and r["status"] == "waiting" and r,
            WAIT_S,
            "the task to show waiting",
        )
        assert waiting["message"] == "⏸ Waiting at the terminal: Claude Code asks to use Bash(touch asked.txt)"
        assert not (work / "asked.txt").exists(), "nothing ran before the person answered"
        term.type(b"\r")  # "1. Yes" at the terminal
        wait_until((work / "asked.txt").exists, WAIT_S, "the call to run")
        wait_until(
            lambda: (r := _row(matrix, name)) is not None and r["status"] != "waiting",
            WAIT_S,
            "the task to work again",
        )
        lines = [str(c.get("message") or "") for c in matrix.timeline(waiting["task_id"])]
        assert "Allowed at the terminal (once): Bash(touch asked.txt)" in lines, lines
    finally:
        term.stop()
