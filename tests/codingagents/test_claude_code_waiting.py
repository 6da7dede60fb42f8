"""Claude Code 2.1.330 in its interactive UI, at a terminal the test holds,
its ``Notification`` hook set as docs/reference/coding-agents.md shows it
(``spanvisor hook claude-code``): while the CLI's own permission dialog
waits for the person at the terminal, the session's task shows as waiting
(its row, ``spanvisor tasks``, its Slack message), naming the call; once
the person answers there, it works again and its thread says who decided
what. The real CLI, the real serve, the fake Slack and the fake model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from spanvisor.gate import turns
from tests.codingagents import claude_code as cc
from tests.codingagents import claude_tty as tty
from tests.codingagents import endhooks as eh
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import Matrix
from tests.receiver.serve_proc import message_text
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(300)]

WAIT_S = 90.0


def notification_hooks() -> dict[str, Any]:
    """Claude Code's ``Notification`` entry from the doc's settings block."""
    block = next(b for b in eh._blocks("json") if '"Notification"' in b)
    hooks: dict[str, Any] = json.loads(eh._ours(block, "claude-code"))["hooks"]
    return hooks


def _row(matrix: Matrix, name: str) -> dict[str, Any] | None:
    rows = [r for r in matrix.tasks_of("claude-code") if r["task_name"] == name]
    return rows[0] if rows else None


def _tasks_table(matrix: Matrix) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    env["SPANVISOR_DATABASE_URL"] = matrix.db_url
    done = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "tasks", "--status", "waiting", "--limit", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return done.stdout


def test_a_permission_prompt_at_the_terminal_shows_the_task_waiting_until_answered(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(
        uuid.uuid4().hex[:12],
        Script([tool("Bash", command="touch made.txt", description="make a file"), text("Done.")]),
    )
    home, work = tmp_path / "home", tmp_path / "w"
    tty.first_run_done(home, work)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"hooks": {**eh.claude_hooks(), **notification_hooks()}}))
    env = cc.env(home, matrix, anthropic, run_id, SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    name = f"make a file ({run_id})"
    term = tty.Terminal(tty.argv(cli_bin, name, settings), env, work)
    try:
        # The dialog is up; 6 s later with no key pressed Claude Code runs its Notification hook.
        waiting = wait_until(
            lambda: (r := _row(matrix, name)) is not None and r["status"] == "waiting" and r,
            WAIT_S,
            f"the task to show waiting\n{term.said()}",
        )
        assert waiting["message"] == "⏸ Waiting at the terminal: Claude Code asks to use Bash(touch made.txt)"
        assert not (work / "made.txt").exists(), "nothing ran before the person answered"
        assert name[:20] in _tasks_table(matrix)  # spanvisor tasks --status waiting lists it
        shown = wait_until(
            lambda: next(
                (
                    t
                    for p in matrix.parents_of(waiting["task_id"])
                    if "Waiting at the terminal" in (t := message_text(p))
                ),
                None,
            ),
            WAIT_S,
            "the Slack message to say it waits",
        )
        assert "waiting" in shown and "Bash(touch made.txt)" in shown
        assert "approve" not in shown.lower(), "no buttons: the person answers at the terminal, not in Slack"

        term.type(b"\r")  # "1. Yes" at the terminal
        wait_until((work / "made.txt").exists, WAIT_S, f"the call to run\n{term.said()}")
        moved = wait_until(
            lambda: (r := _row(matrix, name)) is not None and r["status"] != "waiting" and r,
            WAIT_S,
            "the task to work again",
        )
        assert moved["status"] in ("working", "complete", "context_warning"), moved
        lines = [str(c.get("message") or "") for c in matrix.timeline(waiting["task_id"])]
        assert any(ln.startswith("⏸ Waiting at the terminal") for ln in lines), lines
        assert "Allowed at the terminal (once): Bash(touch made.txt)" in lines, lines
        assert lines.index("Allowed at the terminal (once): Bash(touch made.txt)") > next(
            i for i, ln in enumerate(lines) if ln.startswith("⏸ Waiting")
        )
        # A person quits once the turn has ended: a Ctrl-C that lands while it
        # still ends only interrupts it, and the CLI runs on (CI's run of
        # 2026-11-28, loaded: killed after 30 s, so no SessionEnd). The Stop
        # hook marks the turn's end; a second press quits whatever the first did.
        wait_until(lambda: "Done." in term.said(), WAIT_S, f"the turn to end\n{term.said()}")
        noted = lambda: (t := turns.latest(waiting["task_id"], env)) is not None and t.state == "complete"  # noqa: E731
        wait_until(noted, WAIT_S, "Claude Code's Stop hook to note the turn")
    finally:
        term.stop(presses=2)
    ended = eh.ended(matrix, waiting["task_id"])
    assert ended["status"] == "complete", ended  # its turn finished, then Ctrl-C: SessionEnd
