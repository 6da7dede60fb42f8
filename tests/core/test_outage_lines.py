"""An outage is said once, naming what does not answer and the setting
that points there, retried with backoff; the agent still exits within its
documented bound (its pipeline's shutdown, min(5 s, SPANVISOR_SHUTDOWN_TIMEOUT),
plus a few hundred milliseconds), not once per flush."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

AGENT = textwrap.dedent(
    """
    import time
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from spanvisor import SpanvisorSpanProcessor
    from spanvisor.agent import task

    provider = TracerProvider()
    provider.add_span_processor(SpanvisorSpanProcessor())
    trace.set_tracer_provider(provider)
    with task("Migrate orders", agent_id="sprocket") as t:
        t.checkpoint("step 1", progress=30)
        time.sleep(float(__import__("os").environ["RUN_S"]))
    print("DONE", time.time(), flush=True)
    """
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_database_url_is_one_line_and_the_agent_exits_in_time(tmp_path: Path) -> None:
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env.update(
        SPANVISOR_DATA_DIR=str(tmp_path),
        SPANVISOR_DATABASE_URL=f"postgresql://svc:hunter2@127.0.0.1:{port}/audit",
        SPANVISOR_SINKS="console,postgres",
        SPANVISOR_CONSOLE_STREAM="stdout",
        SPANVISOR_SHUTDOWN_TIMEOUT="2s",
        RUN_S="5",
    )
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    ended = time.time()
    assert out.returncode == 0, out.stderr
    done = float(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("DONE")))
    spend = [line for line in out.stderr.splitlines() if "spending" in line]
    # Five seconds of a sync every second: said once, with the URL (masked)
    # and the setting, not once a second.
    assert len(spend) == 1, out.stderr
    assert (
        f"PostgreSQL at postgresql://svc:****@127.0.0.1:{port}/audit (SPANVISOR_DATABASE_URL) does not answer"
        in (spend[0])
    )
    assert "hunter2" not in out.stderr + out.stdout
    # The exit: one shutdown of 2 s (SPANVISOR_SHUTDOWN_TIMEOUT), not a flush
    # of the providers and then a shutdown, each waiting on the database.
    assert ended - done < 2.0 + 1.5, (ended - done, out.stderr)


def test_an_unreachable_slack_is_named_once_and_the_agent_exits_in_time(tmp_path: Path) -> None:
    port = _closed_port()
    base = f"http://127.0.0.1:{port}/api/"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env.update(
        SPANVISOR_DATA_DIR=str(tmp_path),
        SLACK_BOT_TOKEN="xoxb-1-unreachable",
        SPANVISOR_SLACK_CHANNEL="C0123",
        SPANVISOR_SLACK_BASE_URL=base,
        SPANVISOR_SINKS="slack",
        SPANVISOR_SHUTDOWN_TIMEOUT="2s",
        RUN_S="3",
    )
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    ended = time.time()
    assert out.returncode == 0, out.stderr
    done = float(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("DONE")))
    said = [line for line in out.stderr.splitlines() if "Slack cannot be reached" in line]
    assert len(said) == 1, out.stderr
    assert f"Slack cannot be reached at {base} (SPANVISOR_SLACK_BASE_URL): " in said[0], said
    dropped = [line for line in out.stderr.splitlines() if "slack undelivered" in line]
    assert dropped and all(f"Slack did not answer at {base}" in line for line in dropped), out.stderr
    assert "xoxb-1-unreachable" not in out.stderr
    assert ended - done < 2.0 + 1.5, (ended - done, out.stderr)
