"""Zero loss: a database outage mid-stream, and a writer SIGKILLed with a full outbox."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
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


# Hang guards, not timing asserts: generous bounds that only a hang reaches.
EXPORT_DEADLINE_S = 60.0
CONDITION_DEADLINE_S = 60.0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, polling, failing with ``what`` past the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONDITION_DEADLINE_S
    while not condition():
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_outage_mid_stream_loses_and_duplicates_nothing(own_pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    events = [e for n in range(40) for e in task_stream(n, checkpoints=25)]
    batches = [events[i : i + 20] for i in range(0, len(events), 20)]
    url = own_pg_server.url()

    async def main() -> None:
        sink = PostgresSink()
        ctx = make_ctx(make_config(tmp_path, url, db_command_timeout=2.0))
        await sink.start(ctx)
        outbox = sink.outbox
        assert outbox is not None
        results = []
        outage_at, back_at = len(batches) // 4, len(batches) // 2
        for i, batch in enumerate(batches):
            if i == outage_at:
                await asyncio.to_thread(own_pg_server.stop)
            if i == back_at:
                # Every batch of the outage is in the outbox, and health() says why.
                assert outbox.size == sum(len(b) for b in batches[outage_at:back_at])
                ok, reason = sink.health()
                # (the first failed write may have met the shutdown itself, later ones a refused connection)
                assert not ok and reason.split(" (")[0] in {"cannot connect", "unavailable"}, reason
                await asyncio.to_thread(own_pg_server.start)
            size_before = outbox.size
            # Never hangs on a dead database: the batch goes to the outbox instead.
            results.append(await asyncio.wait_for(sink.export(batch), EXPORT_DEADLINE_S))
            if i < outage_at:
                assert outbox.size == 0, "while PostgreSQL is up, batches are written, not queued"
            elif i < back_at:
                assert outbox.size == size_before + len(batch), "a batch of the outage is queued whole"
            await asyncio.sleep(0)  # let the replayer run between batches
        assert set(results) == {SinkResult.SUCCESS}
        assert await sink.force_flush(CONDITION_DEADLINE_S), f"{outbox.size} events still in the outbox"
        await until(lambda: sink.health()[0], "health() to report PostgreSQL back")
        await sink.shutdown(5)
        assert ctx.stats.total("dropped_total") == 0
        await assert_exactly_once(url, events)

    run(main)


def read_line(proc: subprocess.Popen[str], deadline_s: float) -> str:
    """The child's next stdout line, or a failure if it says nothing for ``deadline_s``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], deadline_s)
    assert ready, f"the child printed nothing in {deadline_s:g} s"
    return proc.stdout.readline()


WRITER = textwrap.dedent("""
    import asyncio, sys, time
    from spanvisor.config import Config
    from spanvisor.sink import SinkContext
    from spanvisor.stats import PipelineStats
    from spanvisor.statestores.memory import InMemoryStateStore
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
    # The writer sees the same database refuse it (a wrong password), so all
    # goes to its outbox; the restart, with the right one, is the same
    # destination (host, port, dbname, user) and replays it there.
    dead_url = re.sub(r":[^:@/]+@", ":wrong-password@", db_url, count=1)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), dead_url],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(proc, CONDITION_DEADLINE_S)
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
