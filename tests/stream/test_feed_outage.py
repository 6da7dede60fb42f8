"""The stream's PostgreSQL feed through a database outage: the events made
meanwhile wait in the stream sink's queue and reach the table, and so every
client, once the database is back, in the pipeline's order, none twice and
none missing; a batch written notifies the other replicas at commit. Both
with the feed writing alone and with the PostgreSQL sink beside it, whose
transactions carry the feed's rows while it is writing
(tests/postgres/test_stream_rows.py shows that by the rows' ``xmin``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from spanvisor.events import TaskFinished
from spanvisor_postgres.eventfeed import CHANNEL
from spanvisor_postgres.migrate import migrate
from tests.stream._sse import read, run
from tests.stream.conftest import kw, serve_stream, tasks
from tests.waiting import wait_until


async def _migrated(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("audit", [False, True], ids=["feed-alone", "with-the-audit-writer"])
def test_an_outage_delays_the_stream_and_loses_or_doubles_nothing(
    own_pg_server: Any, tmp_path: Path, audit: bool
) -> None:
    url = own_pg_server.url()
    run(_migrated(url))
    s = serve_stream(tmp_path, audit, SPANVISOR_DATABASE_URL=url, SPANVISOR_STREAM_FEED="postgres")
    try:
        start = s.head()
        s.post(tasks(2, seed=51))
        wait_until(lambda: len(s.sink.of_type(TaskFinished)) == 2, what="the first tasks")
        own_pg_server.stop()
        s.post(tasks(3, seed=52))  # accepted: the receiver's journal and the pipeline do not need the database
        wait_until(lambda: len(s.sink.of_type(TaskFinished)) == 5, what="the pipeline, database down")
        own_pg_server.start()
        own_pg_server.wait_ready()
        made = [e.event_id for e in s.sink.events]
        frames, _ = run(read(f"{s.events_url}?after={start}", until=lambda f: len(f) >= len(made), timeout=60, **kw()))
        assert [f.event_id for f in frames] == made
        assert run(_count(url)) == len(made)  # one row each, retries included
    finally:
        s.receiver.close()


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM stream_events"))
    finally:
        await conn.close()


def test_a_written_batch_notifies_the_other_replicas(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    s = serve_stream(tmp_path, SPANVISOR_DATABASE_URL=url, SPANVISOR_STREAM_FEED="postgres")
    try:
        s.head()  # a client's position: the stream is read, so its batches are written

        async def listen() -> int:
            got: asyncio.Queue[str] = asyncio.Queue()
            conn = await asyncpg.connect(url)
            try:
                await conn.add_listener(CHANNEL, lambda *a: got.put_nowait(a[2]))
                await asyncio.to_thread(s.post, tasks(1, seed=53))
                await asyncio.wait_for(got.get(), 30)  # a hang guard, not a timing
                return got.qsize() + 1
            finally:
                await conn.close()

        assert run(listen()) >= 1
    finally:
        s.receiver.close()
