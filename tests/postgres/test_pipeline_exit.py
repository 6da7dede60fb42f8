"""A normal exit without ``shutdown()``: the PostgreSQL sink shuts down cleanly.

The SDK shuts providers down from ``atexit``, after ``concurrent.futures``
refuses new work; the pipeline therefore shuts itself down first, from its
``threading`` exit hook, while its sinks can still use threads. Run in a
subprocess with the real SDK, against the real test database and against a
closed port (the outbox path).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spanvisor.pipeline.outbox import Outbox
from spanvisor_postgres import PostgresSink
from spanvisor_postgres.sink import outbox_destination

from ._events import task_stream
from .conftest import fetch, make_config, make_ctx, run

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
    # An agent's exit waits at most EXIT_FLUSH_S (5 s) whatever the setting;
    # the flush waits its whole 60 % for a database that never answers.
    url = f"postgresql://postgres:x@127.0.0.1:{port}/spanvisor"
    proc = _run_agent(tmp_path, url, "8s")
    _clean(proc.stderr)
    assert "PostgreSQL is back" not in proc.stderr, proc.stderr
    assert "stay in the postgres outbox" in proc.stderr, proc.stderr

    async def kept() -> int:
        box = await Outbox.open(
            tmp_path / "outbox", "postgres", 1000, destination=outbox_destination(make_config(tmp_path, url))
        )
        try:
            return box.size
        finally:
            await box.close()

    assert run(kept) == 3, "the task's start, checkpoint and end wait in the outbox for the next start"


@pytest.mark.slow
def test_a_close_while_the_replayer_connects_ends_the_replayer_then(tmp_path: Path) -> None:
    """The close set the replayer's wake-up while it was connecting; the replay
    failed, and the loop once cleared that wake-up unchecked and slept out its
    backoff, so the close waited out its whole share for it. Refused for long
    enough that the backoff outgrows that share, the replayer is then held
    mid-connect, the close begins, and the connection is let go."""

    async def main() -> None:
        held: list[asyncio.StreamWriter] = []
        holding = False
        arrived = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if holding:
                held.append(writer)
                arrived.set()
            else:
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, f"postgresql://postgres:x@127.0.0.1:{port}/spanvisor")))
        await sink.export(task_stream(0, checkpoints=2))
        assert sink.outbox is not None and sink.outbox.size
        await asyncio.sleep(3.3)  # refused: the backoff doubles from 0.1 s past 2 s
        holding = True
        await asyncio.wait_for(arrived.wait(), 30)  # a hang guard, not a timing assert
        closing = asyncio.create_task(sink.shutdown(4.0))  # the replayer's share is half: 2 s
        while not sink._closing:
            await asyncio.sleep(0.01)
        holding = False  # a connection after this one is refused, as before
        for writer in held:
            writer.close()
        await closing
        server.close()
        assert sink._replayer is not None and sink._replayer.done()
        assert not sink._replayer.cancelled(), "the close waited out the replayer's backoff and cancelled it"

    run(main)
