"""A budget set to stop, with the real Claude Code under ``spanvisor run``.

The matrix's ``serve`` gives sessions of the agent ``budget-stopped`` a task
budget of a tenth of a cent with ``SPANVISOR_BUDGET_STOP`` on (served.py);
the session names that agent through its resource (``spanvisor.agent``).
Its first model call (Claude Code reports its cost) passes the budget; its
second waits on a model that holds its answer back, so the session is busy
when spanvisor records the budget's cancel. The launcher, following the
task's decisions as for any cancel, stops the CLI; the task ends
``cancelled`` with the budget as who and why, one intervention, and Slack's
thread says it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents.agents import start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, held, text, tool
from tests.codingagents.served import STOPPED_AGENT, STOPPED_BUDGET_USD, Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(300)]

WAIT_S = 120.0
HOLD_S = 300.0  # the second answer: never, before the session is stopped


def test_a_session_that_reaches_its_budget_is_stopped_under_the_launcher(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(
        uuid.uuid4().hex[:12], Script([tool("Bash", command="echo one"), held(text("too late"), HOLD_S)])
    )
    task_id = f"budget-{run_id}"
    env = cc.env(
        tmp_path / "home", matrix, anthropic, run_id, OTEL_RESOURCE_ATTRIBUTES=f"spanvisor.agent={STOPPED_AGENT}"
    )
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live while the CLI stops
    argv = cc.argv(cli_bin, f"spend a little ({run_id})", launcher=True)
    running = start(argv, env, tmp_path / "work", {"endpoint": matrix.endpoint, "task-id": task_id})
    try:
        ran = running.wait()  # the CLI stops on the budget's cancel, long before its model answers
    finally:
        running.stop()
    assert "Cancelled by budget" in ran.stderr and "stopping" in ran.stderr, ran.said()

    def ended() -> dict[str, object] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["ended_at"] is not None else None

    row = wait_until(ended, WAIT_S, "the task to end")
    assert row["status"] == "cancelled", row
    assert str(row["message"]).startswith("Cancelled by budget: budget reached: $"), row
    assert f"of ${STOPPED_BUDGET_USD}" in str(row["message"]), row
    [stop] = matrix.interventions(task_id)
    assert (stop["action"], stop["actor"], stop["source"], stop["outcome"]) == (
        "cancel",
        "spanvisor:budget",
        "budget",
        "applied",
    ), stop
    assert str(stop["comment"]).startswith("budget reached: $"), stop
    cancel = (matrix.control(task_id) or {}).get("cancel") or {}
    assert (cancel.get("by"), cancel.get("source")) == ("budget", "budget"), cancel

    # Slack: the budget's 100 % line, and its cancel in the task's thread.
    [parent] = matrix.parents_of(task_id)

    def thread() -> str | None:
        lines = matrix.slack.on_loop(lambda: matrix.slack.fake.thread(parent))
        shown = json.dumps([[m.text, m.blocks] for m in lines])
        return shown if "Cancel requested by budget" in shown and "set to stop the task" in shown else None

    wait_until(thread, WAIT_S, "Slack's thread to say the budget cancelled the session")
