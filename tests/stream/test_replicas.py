"""Two replicas on one PostgreSQL: a client on A sees what B's pipeline
made, in B's order, and resumes on A from an id B's stream sent; a third
whose memory is too small replays from the table. With the feed writing
alone and with the PostgreSQL sink's transactions carrying its rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from spanvisor.events import TaskFinished
from tests.conftest_pg import PgServer
from tests.stream._sse import read, run
from tests.stream.conftest import kw, serve_stream, tasks
from tests.waiting import wait_until


@pytest.mark.parametrize("audit", [False, True], ids=["feed-alone", "with-the-audit-writer"])
def test_a_client_on_one_replica_sees_the_other_s_events(pg_server: PgServer, tmp_path: Path, audit: bool) -> None:
    url = pg_server.database()
    env = {"SPANVISOR_DATABASE_URL": url, "SPANVISOR_STREAM_FEED": "postgres"}
    a = serve_stream(tmp_path / "a", audit, SPANVISOR_REPLICA_ID="a", **env)
    b = serve_stream(tmp_path / "b", audit, SPANVISOR_REPLICA_ID="b", **env)
    try:
        assert a.stream.ring is not None and b.stream.ring is not None
        assert a.stream.ring.epoch == b.stream.ring.epoch and a.stream.ring.epoch.startswith("p")
        start = a.head()

        async def go() -> list[str]:
            reader = asyncio.ensure_future(
                read(
                    f"{a.events_url}?after={start}",
                    until=lambda f: sum(x.event == "task_finished" for x in f) >= 3,
                    **kw(),
                )
            )
            await asyncio.sleep(0.3)
            await asyncio.to_thread(b.post, tasks(3, seed=31))
            frames, _ = await reader
            return [f.event_id for f in frames]

        on_a = run(go())
        wait_until(lambda: len(b.sink.of_type(TaskFinished)) == 3, what="B's pipeline")
        assert on_a == [e.event_id for e in b.sink.events]
        assert a.sink.events == []  # A's pipeline made none of them
        # An id B's stream sent resumes on A, exactly after it.
        from_b, _ = run(read(f"{b.events_url}?after={start}", until=lambda f: len(f) >= 4, **kw()))
        rest, _ = run(read(f"{a.events_url}?after={from_b[3].id}", until=lambda f: len(f) >= len(on_a) - 4, **kw()))
        assert [f.event_id for f in rest] == on_a[4:]
        # A replica whose memory holds two events replays the rest from PostgreSQL.
        c = serve_stream(tmp_path / "c", SPANVISOR_REPLICA_ID="c", SPANVISOR_STREAM_BUFFER="2", **env)
        try:
            replayed, _ = run(read(f"{c.events_url}?after={start}", until=lambda f: len(f) >= len(on_a), **kw()))
            assert [f.event_id for f in replayed] == on_a
        finally:
            c.receiver.close()
    finally:
        a.receiver.close()
        b.receiver.close()
