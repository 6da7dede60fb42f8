"""`spanvisor demo` end to end: the main job, as `make demo` runs it, against a
real PostgreSQL, then read back with the operator's commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_shows_three_agents_and_leaves_them_in_the_audit_trail(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    env = {
        **os.environ,
        "SPANVISOR_DATABASE_URL": url,
        "SPANVISOR_DATA_DIR": str(tmp_path),
        "SPANVISOR_SINKS": "console,postgres",
        "SPANVISOR_CONSOLE_COLOR": "never",
    }
    env.pop("SLACK_BOT_TOKEN", None)
    demo = _run(["demo", "--fast"], env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    # The console shows what Slack would: a card per task and its thread.
    for agent in ("rivet", "sprocket", "gauge"):
        assert f"{agent} · complete" in out or f"{agent} · error" in out
    assert "❌ sprocket · error" in out and "RuntimeError" in out
    assert "past the 70% warning level" in out and "past the 85% critical level" in out
    assert "Artifact: diagnosis-F47.md" in out
    assert "dropped 0" in out

    listed = _run(["tasks", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    by_agent = {r["agent_id"]: r for r in rows}
    assert set(by_agent) == {"rivet", "sprocket", "gauge"}
    assert by_agent["rivet"]["status"] == "complete"
    assert by_agent["sprocket"]["status"] == "error"
    assert by_agent["gauge"]["status"] == "complete"

    table = _run(["tasks"], env)
    assert "TASK" in table.stdout and "sprocket" in table.stdout and "error" in table.stdout

    gauge = by_agent["gauge"]["task_id"]
    detail = _run(["task", gauge[:12], "--json"], env)
    assert detail.returncode == 0, detail.stderr
    doc = json.loads(detail.stdout)
    text = json.dumps(doc)
    assert text.count("context_warning") >= 2, "70 % and 85 % warnings are in the timeline"
    assert "gateway-30d-summary.md" in text
