"""`spanvisor demo | head`: the reader leaving ends nobody's task.

The demo's screen is only a screen: when the pipe's reader exits, the agent
that was printing its approval hint failed with "[Errno 32] Broken pipe"
and the demo ended in a traceback. Now the agents and sinks go on, and
the demo exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def test_a_reader_that_leaves_fails_no_task(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env.update(SPANVISOR_DATA_DIR=str(tmp_path), SPANVISOR_DATABASE_URL=url, SPANVISOR_SINKS="console,postgres")
    demo = subprocess.Popen(
        [sys.executable, "-m", "spanvisor.cli", "demo", "--fast"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None and demo.stderr is not None
    demo.stdout.readline()  # `head -1`: one line, then the reader is gone
    demo.stdout.close()
    err = demo.stderr.read()
    assert demo.wait(180) == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err, err
    tasks = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "tasks", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {r["agent_id"]: r for r in map(json.loads, tasks.stdout.splitlines())}
    assert rows["rivet"]["status"] == "complete", rows["rivet"]
    assert "Broken pipe" not in str(rows["rivet"].get("error_message"))
