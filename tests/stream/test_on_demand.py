"""The stream is recorded only while somebody may read it: before any client
its events are neither encoded nor written (the memory feed's ring and the
PostgreSQL feed's table stay empty), a client that connects gets every event
published after its connection, and a position from before events that were
skipped (no client of any replica for a retention) gets a reset, never a
silent gap."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from spanvisor.events import TaskFinished
from tests.stream._sse import read, run
from tests.stream.conftest import AUTH, Served, kw, serve_stream, tasks
from tests.waiting import wait_until


def _on_loop(s: Served, coro: Any) -> Any:
    assert s.stream.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, s.stream.loop).result(10)


def _post_unread(s: Served, seed: int) -> int:
    """``seed``'s task posted with no client: how many events the stream skipped."""
    done, skipped, made = len(s.sink.of_type(TaskFinished)), s.stream.skipped, len(s.sink.events)
    s.post(tasks(1, seed=seed))
    wait_until(lambda: len(s.sink.of_type(TaskFinished)) == done + 1, what="the pipeline")
    wait_until(lambda: s.stream.skipped == skipped + len(s.sink.events) - made, what="the stream skipping")
    return len(s.sink.events) - made


def _stream_while_posting(s: Served, seed: int, *, on: Served | None = None, **headers: str) -> list[Any]:
    """A client (of ``on``, else of ``s``) connected before ``seed``'s task
    is posted to ``s``, until it finished."""
    to = on or s

    async def go() -> list[Any]:
        reader = asyncio.ensure_future(
            read(to.events_url, until=lambda f: any(x.event == "task_finished" for x in f), headers=headers)
        )
        await asyncio.to_thread(wait_until, lambda: to.stream.clients is not None and to.stream.clients.count() == 1)
        await asyncio.to_thread(s.post, tasks(1, seed=seed))
        frames, _ = await reader
        return list(frames)

    made = len(s.sink.events)
    frames = list(run(go()))
    events = [f for f in frames if f.event != "reset"]
    wait_until(lambda: len(s.sink.events) >= made + len(events), what="the pipeline's own sink")
    return frames


def test_before_any_client_the_memory_feed_records_nothing_then_a_client_gets_what_follows(tmp_path: Path) -> None:
    s = serve_stream(tmp_path)
    try:
        made = _post_unread(s, seed=81)
        assert s.stream.skipped == made > 0
        assert s.stream.ring is not None and s.stream.ring.head == 0
        before = len(s.sink.events)
        frames = _stream_while_posting(s, 82, **AUTH)
        assert [f.event_id for f in frames] == [e.event_id for e in s.sink.events[before:]]
        assert s.stream.skipped == made  # from the first client on, for the process's life
    finally:
        s.receiver.close()


def test_the_postgres_feed_writes_no_row_unread_and_a_position_across_a_skip_gets_a_reset(
    pg_server: Any, tmp_path: Path
) -> None:
    url = pg_server.database()
    # A retention of a second: the client's "wanted" lapses soon after it leaves.
    s = serve_stream(
        tmp_path, SPANVISOR_DATABASE_URL=url, SPANVISOR_STREAM_FEED="postgres", SPANVISOR_STREAM_RETENTION="1s"
    )

    async def rows() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM stream_events"))
        finally:
            await conn.close()

    try:
        made = _post_unread(s, seed=83)
        assert s.stream.skipped == made > 0
        assert run(rows()) == 0
        before = len(s.sink.events)
        frames = _stream_while_posting(s, 84, **AUTH)
        assert [f.event_id for f in frames] == [e.event_id for e in s.sink.events[before:]]
        assert run(rows()) == len(frames)
        # No client for the retention: the next events are skipped, marked as a gap.
        feed = s.stream.feed
        assert feed is not None
        wait_until(lambda: not _on_loop(s, feed.recording()), what="the stream unread")
        assert _post_unread(s, seed=85) > 0 and run(rows()) == len(frames)
        # The last client's position resumes with a reset, then what follows.
        after = len(s.sink.events)
        resumed = _stream_while_posting(s, 86, **{**AUTH, "Last-Event-ID": str(frames[-1].id)})
        assert resumed[0].event == "reset"
        assert [f.event_id for f in resumed[1:]] == [e.event_id for e in s.sink.events[after:]]
    finally:
        s.receiver.close()


def test_a_client_of_one_replica_makes_the_other_record(pg_server: Any, tmp_path: Path) -> None:
    env = {"SPANVISOR_DATABASE_URL": pg_server.database(), "SPANVISOR_STREAM_FEED": "postgres"}
    a = serve_stream(tmp_path / "a", SPANVISOR_REPLICA_ID="a", **env)
    b = serve_stream(tmp_path / "b", SPANVISOR_REPLICA_ID="b", **env)
    try:

        async def go() -> list[str]:
            reader = asyncio.ensure_future(
                read(a.events_url, until=lambda f: any(x.event == "task_finished" for x in f), **kw())
            )
            await asyncio.to_thread(wait_until, lambda: a.stream.clients is not None and a.stream.clients.count() == 1)
            await asyncio.to_thread(b.post, tasks(1, seed=87))
            frames, _ = await reader
            return [f.event_id for f in frames]

        on_a = run(go())
        wait_until(lambda: len(b.sink.of_type(TaskFinished)) == 1, what="B's pipeline")
        assert on_a == [e.event_id for e in b.sink.events] and b.stream.skipped == 0
    finally:
        a.receiver.close()
        b.receiver.close()


def test_a_client_connecting_to_one_replica_just_after_the_other_marked_a_gap_misses_nothing(
    pg_server: Any, tmp_path: Path
) -> None:
    """B skips a task nobody reads and marks the gap; A learns of the mark at
    its next look (up to a second later). A client that connects to A in
    between starts past the mark: no reset, and every event B publishes
    after the connection reaches it."""
    url = pg_server.database()
    env = {"SPANVISOR_DATABASE_URL": url, "SPANVISOR_STREAM_FEED": "postgres", "SPANVISOR_STREAM_RETENTION": "1s"}
    a = serve_stream(tmp_path / "a", SPANVISOR_REPLICA_ID="a", **env)
    b = serve_stream(tmp_path / "b", SPANVISOR_REPLICA_ID="b", **env)

    async def pruned() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT pruned_through FROM stream_meta"))
        finally:
            await conn.close()

    try:
        in_window = 0
        for attempt in range(4):
            wait_until(lambda: not _on_loop(b, b.stream.feed.recording()), what="the stream unread")  # type: ignore[union-attr]
            _post_unread(b, seed=90 + 2 * attempt)
            mark = run(pruned())
            assert a.stream.ring is not None
            in_window += a.stream.ring.floor < mark  # A has not looked at the mark yet
            before = len(b.sink.events)
            frames = _stream_while_posting(b, 91 + 2 * attempt, on=a, **AUTH)
            wait_until(lambda: len(b.sink.of_type(TaskFinished)) == 2 * (attempt + 1), what="B's pipeline")  # noqa: B023 - called at once
            assert [f.event for f in frames if f.event == "reset"] == []
            assert [f.event_id for f in frames] == [e.event_id for e in b.sink.events[before:]]
        assert in_window, "no connection fell between the mark and A's look at it: the race was not tried"
    finally:
        a.receiver.close()
        b.receiver.close()
