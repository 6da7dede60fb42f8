"""The PostgreSQL feed reading its own rows back: a body it holds is let go
only once its row was delivered (a failed delivery reads the rows again,
whole), and an own row gone before it could be read whole is skipped and
counted, not a crash of the follower."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from spanvisor.stream.ring import Item
from spanvisor.stream.sink import item_of
from spanvisor_postgres import eventfeed
from spanvisor_postgres.eventfeed import PostgresEventFeed

from ._events import task_stream
from .conftest import make_config, run


async def _until(cond: Any, what: str) -> None:
    for _ in range(600):  # a hang guard (30 s), not a timing
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_failed_delivery_keeps_the_held_bodies_for_the_next_read(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    items = [item_of(e) for e in task_stream(7, checkpoints=4)]
    got: list[tuple[int, Item]] = []
    calls = [0]

    def deliver(records: Any) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("the ring refused once")
        got.extend(records)

    async def main() -> None:
        feed = await PostgresEventFeed.open(make_config(tmp_path, url, replica_id="r1"), {})
        await feed.start(deliver)
        try:
            assert await feed.publish(items)
            await _until(lambda: len(got) >= len(items), "the rows delivered after the failure")
            assert [(i.event_id, i.data) for _, i in got] == [(i.event_id, i.data) for i in items]
            assert calls[0] >= 2 and feed._own == {}
        finally:
            await feed.close()

    run(main)


def test_an_own_row_gone_before_it_is_read_whole_is_skipped_and_counted(
    pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.database()
    items = [item_of(e) for e in task_stream(8, checkpoints=4)]
    # Every whole read finds nothing: as if another replica pruned the rows
    # between the follower's page and its read of each.
    monkeypatch.setattr(eventfeed, "_ONE", eventfeed._ONE + " AND false")

    async def main() -> None:
        config = make_config(tmp_path, url, replica_id="r2")
        got: list[tuple[int, Item]] = []
        writer = await PostgresEventFeed.open(config, {})
        reader = await PostgresEventFeed.open(config, {})  # the same replica, another run: holds nothing
        await writer.start(lambda records: None)
        head = await reader.start(got.extend)
        try:
            assert await writer.publish(items)
            await _until(lambda: reader._cursor >= head + len(items), "the reader past the gone rows")
            assert reader.skipped_rows == len(items) and got == []
            assert reader._task is not None and not reader._task.done()
        finally:
            await reader.close()
            await writer.close()

    run(main)


def test_a_row_the_stream_sink_could_not_deliver_is_a_counted_drop_on_metrics(
    pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skipped row reaches /metrics as spanvisor_dropped_total{reason=
    "stream_row_gone",sink="stream"}, as the stream's other drops do."""
    from prometheus_client import generate_latest

    from spanvisor.stream.sink import StreamSink
    from spanvisor_prometheus.selfmetrics import SelfMetrics

    from .conftest import make_ctx

    url = pg_server.database()
    items = [item_of(e) for e in task_stream(9, checkpoints=3)]
    monkeypatch.setattr(eventfeed, "_ONE", eventfeed._ONE + " AND false")

    async def main() -> None:
        config = make_config(tmp_path, url, replica_id="r3", sinks=["postgres"])
        ctx = make_ctx(config)
        sink = StreamSink()
        await sink.start(ctx)
        writer = await PostgresEventFeed.open(config, {})  # this replica's earlier run: the sink holds none of it
        await writer.start(lambda records: None)
        try:
            assert isinstance(sink.feed, PostgresEventFeed)
            assert await writer.publish(items)
            feed = sink.feed
            await _until(lambda: feed.skipped_rows == len(items), "the sink's feed past the gone rows")
            assert ctx.stats.value("dropped_total", reason="stream_row_gone", sink="stream") == len(items)
            text = generate_latest(SelfMetrics(ctx.stats).registry).decode()
            assert f'spanvisor_dropped_total{{reason="stream_row_gone",sink="stream"}} {float(len(items))}' in text
        finally:
            await writer.close()
            await sink.shutdown(5.0)

    run(main)
