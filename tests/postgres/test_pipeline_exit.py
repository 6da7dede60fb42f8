"""A normal exit without ``shutdown()``: the PostgreSQL sink shuts down cleanly.

The SDK shuts providers down from ``atexit``, after ``concurrent.futures``
refuses new work; the pipeline therefore shuts itself down first, from its
``threading`` exit hook, while its sinks can still use threads. Run in a
subprocess with the real SDK, against the real test database and against a
closed port (the outbox path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import fetch, run

AGENT = textwrap.dedent(
    """
    import sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from spanvisor.otel.processor import SpanvisorSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SpanvisorSpanProcessor())
    trace.set_tracer_provider(provider)
    with trace.get_tracer("agent").start_as_current_span(
        "exit test", attributes={"agent.task.name": "exit test", "agent.id": "exiter"}
    ) as root:
        root.add_event("agent.checkpoint", {"message": "half", "agent.progress": 50})
    print("agent done", flush=True)
    # no provider.shutdown(): the SDK's atexit hook and ours do it
    """
)


def _run_agent(tmp_path: Path, url: str, shutdown_timeout: str = "4s") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))} | {
        "SPANVISOR_DATA_DIR": str(tmp_path),
        "SPANVISOR_DATABASE_URL": url,
        "SPANVISOR_SINKS": "postgres",
        "SPANVISOR_STATE_STORE": "memory",
        "SPANVISOR_SHUTDOWN_TIMEOUT": shutdown_timeout,
        "SPANVISOR_DB_COMMAND_TIMEOUT": "2s",
    }
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", AGENT], check=False, cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "agent done" in proc.stdout
    return proc


def _clean(stderr: str) -> None:
    assert "cannot schedule new futures" not in stderr, stderr
    assert "shutdown failed" not in stderr, stderr
    assert "shutdown did not finish" not in stderr, stderr
    assert "Traceback" not in stderr, stderr


@pytest.mark.slow
def test_exit_without_shutdown_writes_the_task_and_logs_no_failure(db_url: str, tmp_path: Path) -> None:
    proc = _run_agent(tmp_path, db_url)
    _clean(proc.stderr)
    rows = run(lambda: fetch(db_url, "SELECT status FROM agent_tasks WHERE agent_id = 'exiter'"))
    assert [r["status"] for r in rows] == ["complete"]


@pytest.mark.slow
def test_exit_with_postgres_never_reachable_keeps_the_outbox_and_never_says_back(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The flush waits its whole 60 % for a database that never answers; at 4 s
    # the closes' 30 % (1.2 s) was once too little on a loaded CI machine.
    proc = _run_agent(tmp_path, f"postgresql://postgres:x@127.0.0.1:{port}/spanvisor", "8s")
    _clean(proc.stderr)
    assert "PostgreSQL is back" not in proc.stderr, proc.stderr
    assert "stay in the postgres outbox" in proc.stderr, proc.stderr
