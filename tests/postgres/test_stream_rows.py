"""The event stream's rows in the audit writer's transaction: a batch the
stream's PostgreSQL feed offers commits with the audit rows the writer was
writing (one transaction: the same ``xmin``); a batch the writer's failed
transaction took, one offered after the writer took its batches, or one
offered while the writer is idle, is written by the feed itself, once;
after the sink stops the feed writes alone again. A replica
reads its own rows back without their bodies, and the rows of an earlier
run of the same replica whole."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from spanvisor.events import Checkpoint, Event, stable_id
from spanvisor.sink import SinkResult
from spanvisor.stream.sink import item_of
from spanvisor_postgres import PostgresSink
from spanvisor_postgres.eventfeed import PostgresEventFeed
from spanvisor_postgres.streamrows import SHARED_KEY, StreamRows, settle, writing

from ._events import T0, task_stream, view
from .conftest import fetch, make_config, make_ctx, run


async def _started(tmp_path: Path, url: str) -> tuple[PostgresSink, PostgresEventFeed]:
    ctx = make_ctx(make_config(tmp_path, url))
    sink = PostgresSink()
    await sink.start(ctx)
    feed = await PostgresEventFeed.open(ctx.config, ctx.shared)
    await feed.start(lambda records: None)
    return sink, feed


async def _publish_during(feed: PostgresEventFeed, sink: PostgresSink, stream: list[Event], audit: list[Event]) -> bool:
    exporting = asyncio.ensure_future(sink.export(audit))
    await asyncio.sleep(0)  # the writer is inside its transaction, waiting on the database
    assert sink.writer is not None and sink.writer.stream_rows is not None and sink.writer.stream_rows.busy
    published = await feed.publish([item_of(e) for e in stream])
    assert await exporting is SinkResult.SUCCESS
    return published


def test_an_offered_batch_commits_in_the_audit_transaction(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = task_stream(1, checkpoints=20)

    async def main() -> None:
        sink, feed = await _started(tmp_path, url)
        try:
            assert await _publish_during(feed, sink, events, events)
        finally:
            await sink.shutdown(5)
            await feed.close()
        rows = await fetch(
            url,
            "SELECT s.event_id, s.xmin::text = c.xmin::text AS same FROM stream_events s"
            " JOIN agent_checkpoints c USING (event_id) ORDER BY s.pos",
        )
        timeline = [e.event_id for e in events if e.kind in ("Checkpoint", "ContextWarning")]
        assert [r["event_id"] for r in rows] == timeline  # in the pipeline's order
        assert all(r["same"] for r in rows)  # one transaction for both tables
        assert len(await fetch(url, "SELECT 1 FROM stream_events")) == len(events)

    run(main)


def test_a_failed_audit_transaction_hands_the_batch_back(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    good = task_stream(2, checkpoints=5)
    # Beyond int64: the audit batch fails and is retried event by event.
    bad = Checkpoint(
        event_id=stable_id("too-big", 2),
        time_ns=T0 + 7,
        task=dataclasses.replace(view(2), input_tokens=2**70, updated_ns=T0 + 7, seq=99),
    )

    async def main() -> None:
        sink, feed = await _started(tmp_path, url)
        try:
            assert await _publish_during(feed, sink, good, [*good[:3], bad, *good[3:]])
            assert await feed.publish([item_of(e) for e in good])  # again: nothing doubles
        finally:
            await sink.shutdown(5)
            await feed.close()
        stream = [r["event_id"] for r in await fetch(url, "SELECT event_id FROM stream_events ORDER BY pos")]
        assert stream == [e.event_id for e in good]
        assert [r["event_id"] for r in await fetch(url, "SELECT event_id FROM quarantine")] == [bad.event_id]

    run(main)


def test_stream_rows_postgresql_refuses_fail_alone(pg_server: Any, tmp_path: Path) -> None:
    """A NUL in a stream row fails the writer's transaction after it took the
    batch: the batch is handed back, the audit rows go in (event by event, none
    quarantined), and the feed's own write raises for the stream's isolation."""
    url = pg_server.database()
    events = task_stream(6, checkpoints=4)
    bad = [item_of(e)._replace(data=b'{"x":"\x00"}') for e in events[:2]]

    async def main() -> None:
        sink, feed = await _started(tmp_path, url)
        try:
            exporting = asyncio.ensure_future(sink.export(events))
            await asyncio.sleep(0)
            with pytest.raises(asyncpg.DataError):
                await feed.publish(bad)
            assert await exporting is SinkResult.SUCCESS
        finally:
            await sink.shutdown(5)
            await feed.close()
        assert await fetch(url, "SELECT 1 FROM stream_events") == []
        assert await fetch(url, "SELECT 1 FROM quarantine") == []
        timeline = [e for e in events if e.kind in ("Checkpoint", "ContextWarning")]
        assert len(await fetch(url, "SELECT 1 FROM agent_checkpoints")) == len(timeline)

    run(main)


def test_what_comes_after_the_take_is_handed_back_when_the_write_ends() -> None:
    async def main() -> None:
        carrier = StreamRows()
        assert not carrier.busy
        async with writing(carrier):
            assert carrier.busy
            first = carrier.offer([["e1"]], "r")
            taken = carrier.take()  # what the transaction does before its commit
            late = carrier.offer([["e2"]], "r")
            settle(taken, committed=True)
            assert not late.done.done()
        assert not carrier.busy
        assert first.done.result() is True and late.done.result() is False

    asyncio.run(main())


def test_an_idle_writer_or_none_leaves_the_feed_to_write_alone(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    first, second = task_stream(3, checkpoints=3), task_stream(4, checkpoints=3)

    async def main() -> None:
        sink, feed = await _started(tmp_path, url)
        ctx = sink.ctx
        assert ctx is not None and SHARED_KEY in ctx.shared
        carrier = ctx.shared[SHARED_KEY]
        offered: list[object] = []
        real_offer = carrier.offer
        # Counted, not timed: an offer is what would make the feed wait.
        carrier.offer = lambda *a: offered.append(a) or real_offer(*a)
        try:
            assert await feed.publish([item_of(e) for e in first])  # the writer is idle: no wait for it
            assert offered == [], "a batch was offered to an idle writer"
        finally:
            await sink.shutdown(5)
        assert SHARED_KEY not in ctx.shared  # no writer at all: nothing to offer to
        try:
            assert await feed.publish([item_of(e) for e in second])
        finally:
            await feed.close()
        stream = [r["event_id"] for r in await fetch(url, "SELECT event_id FROM stream_events ORDER BY pos")]
        assert stream == [e.event_id for e in [*first, *second]]

    run(main)


def test_own_rows_read_back_without_bodies_and_an_earlier_run_s_whole(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = task_stream(5, checkpoints=4)
    items = [item_of(e) for e in events]

    async def main() -> None:
        config = make_config(tmp_path, url, replica_id="r1")
        got: dict[str, list[Any]] = {"now": [], "later": []}
        now = await PostgresEventFeed.open(config, {})
        later = await PostgresEventFeed.open(config, {})  # the same replica, another run: holds nothing
        await now.start(got["now"].extend)
        await later.start(got["later"].extend)
        try:
            assert await now.publish(items[:10])
            assert await later.publish(items[10:])
            want = [(i.event_id, i.data) for i in items]
            for feed in ("now", "later"):
                for _ in range(100):
                    if len(got[feed]) >= len(items):
                        break
                    await asyncio.sleep(0.05)
                assert [(i.event_id, i.data) for _, i in got[feed]] == want, feed
                assert [p for p, _ in got[feed]] == sorted(p for p, _ in got[feed])
            assert got["now"] == got["later"]
            assert now._own == {} and later._own == {}  # every held item was read back
        finally:
            await now.close()
            await later.close()

    run(main)
