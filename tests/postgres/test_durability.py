"""Zero loss: a database outage mid-stream, and a writer SIGKILLed with a full outbox."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from spanvisor.sink import SinkResult
from spanvisor_postgres import PostgresSink
from spanvisor_postgres.embedded import EmbeddedPostgres

from ._events import task_stream
from .conftest import fetch, make_config, make_ctx, run

TIMELINE_SQL = "SELECT event_id FROM agent_checkpoints UNION ALL SELECT event_id FROM task_artifacts"


def expected_ids(events: list[Any]) -> list[str]:
    return sorted(e.event_id for e in events if e.kind in ("Checkpoint", "ContextWarning", "ArtifactAdded"))


async def assert_exactly_once(url: str, events: list[Any]) -> None:
    got = sorted(r["event_id"] for r in await fetch(url, TIMELINE_SQL))
    assert got == expected_ids(events)  # sorted lists: no row missing, none twice
    tasks = await fetch(url, "SELECT status FROM agent_tasks")
    assert len(tasks) == len({e.task_id for e in events})
    assert {t["status"] for t in tasks} == {"complete"}


@pytest.fixture
def own_server() -> Any:
    """A server of its own: this test stops it, which the shared one must never be."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the outage test stops an embedded server; TEST_DATABASE_URL cannot be stopped from here")
    base = Path(tempfile.mkdtemp(prefix="spanvisor-outage-"))
    server = EmbeddedPostgres(base / "postgres", durable=False)
    server.acquire()
    yield server
    server.release()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_outage_mid_stream_loses_and_duplicates_nothing(own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    events = [e for n in range(40) for e in task_stream(n, checkpoints=25)]
    batches = [events[i : i + 20] for i in range(0, len(events), 20)]
    url = own_server.url()

    async def main() -> None:
        sink = PostgresSink()
        ctx = make_ctx(make_config(tmp_path, url, db_command_timeout=2.0))
        await sink.start(ctx)
        assert sink.outbox is not None
        results = []
        outage_at, back_at = len(batches) // 4, len(batches) // 2
        for i, batch in enumerate(batches):
            if i == outage_at:
                await asyncio.to_thread(own_server.stop)
                down_since = time.monotonic()
            if i == back_at:
                # Events kept flowing for a few seconds of outage.
                await asyncio.sleep(max(0.0, 4.0 - (time.monotonic() - down_since)))
                assert sink.outbox.size > 0  # they went to the outbox, not nowhere
                await asyncio.to_thread(own_server.start)
            t0 = time.monotonic()
            results.append(await sink.export(batch))
            assert time.monotonic() - t0 < 3.0  # export never hangs on a dead database
            await asyncio.sleep(0.02)
        assert set(results) == {SinkResult.SUCCESS}
        assert await sink.force_flush(15.0), f"{sink.outbox.size} events still in the outbox"
        await sink.shutdown(5)
        assert ctx.stats.total("dropped_total") == 0
        await assert_exactly_once(url, events)

    run(main)


WRITER = textwrap.dedent("""
    import asyncio, sys, time
    from spanvisor.config import Config
    from spanvisor.sink import SinkContext
    from spanvisor.stats import PipelineStats
    from spanvisor.statestore import InMemoryStateStore
    from spanvisor_postgres import PostgresSink
    from spanvisor_postgres.settings import SETTINGS
    from tests.postgres._events import task_stream

    async def main():
        cfg = Config.load(env={}, extra=SETTINGS).with_values(
            data_dir=sys.argv[1], database_url=sys.argv[2], db_command_timeout=1.0)
        sink = PostgresSink()
        await sink.start(SinkContext(cfg, InMemoryStateStore(), PipelineStats()))
        events = [e for n in range(10) for e in task_stream(n, checkpoints=10)]
        for i in range(0, len(events), 7):
            assert (await sink.export(events[i:i + 7])).value == "success"
        print("exported", sink.outbox.size, flush=True)
        time.sleep(120)  # killed here, with everything still in the outbox

    asyncio.run(main())
""")


@pytest.mark.slow
def test_sigkill_with_events_in_the_outbox_then_restart(db_url: str, tmp_path: Path) -> None:
    events = [e for n in range(10) for e in task_stream(n, checkpoints=10)]
    # The writer sees a database that refuses connections, so all goes to its outbox.
    dead_url = "postgresql://postgres:x@127.0.0.1:1/spanvisor"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), dead_url],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.split() == ["exported", str(len(events))], proc.stderr.read() if proc.stderr else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()

    async def restart() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, db_url)))
        assert await sink.force_flush(10.0)
        await sink.shutdown(5)
        await assert_exactly_once(db_url, events)

    run(restart)
