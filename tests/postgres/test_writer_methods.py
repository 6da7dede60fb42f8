"""Every write method (COPY, the default; the one-statement ``unnest``;
``executemany``) stores exactly the same rows; the writer keeps its
connection between batches; a data error quarantines only its event, with
either batch method."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from spanvisor.events import Checkpoint, stable_id
from spanvisor.sink import SinkResult
from spanvisor_postgres import PostgresSink

from ._events import T0, task_stream, view
from .conftest import fetch, make_config, make_ctx, run
from .test_sink_basic import export_all, snapshot


def test_every_method_stores_the_same_rows(pg_server: Any, tmp_path: Path) -> None:
    events = [e for n in range(4) for e in task_stream(n, checkpoints=25)]
    events += task_stream(9, agent="vera", outcome="error")
    batches = [events[i : i + 40] for i in range(0, len(events), 40)]
    snaps = []
    urls = {m: pg_server.database() for m in ("unnest", "copy", "executemany")}

    async def main() -> None:
        for method, url in urls.items():
            await export_all(url, tmp_path / method, batches, method)
            snaps.append(await snapshot(url))
            # Replayed through the one statement: nothing changes.
            await export_all(url, tmp_path / method, batches[::-1], "unnest")
            assert await snapshot(url) == snaps[-1]

    run(main)
    assert snaps[0] == snaps[1] == snaps[2]
    assert len(snaps[0]["agent_checkpoints"]) > 100 and len(snaps[0]["agent_tasks"]) == 5


def test_one_connection_is_kept_between_batches(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = task_stream(1, checkpoints=30)

    async def main() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, url)))
        try:
            assert sink.writer is not None
            assert await sink.export(events[:10]) is SinkResult.SUCCESS
            kept = sink.writer._conn
            assert kept is not None
            assert await sink.export(events[10:]) is SinkResult.SUCCESS
            assert sink.writer._conn is kept
        finally:
            await sink.shutdown(5)
        assert sink.writer._conn is None  # given back before the pool closed
        timeline = [e for e in events if e.kind in ("Checkpoint", "ContextWarning")]
        assert len(await fetch(url, "SELECT 1 FROM agent_checkpoints")) == len(timeline)

    run(main)


@pytest.mark.parametrize("method", ["copy", "unnest"])
def test_a_data_error_quarantines_only_the_culprit(pg_server: Any, tmp_path: Path, method: str) -> None:
    url = pg_server.database()
    good = task_stream(2, checkpoints=5)
    # An integer beyond int64: asyncpg cannot encode it, so the whole
    # batch fails and is retried event by event.
    bad = Checkpoint(
        event_id=stable_id("too-big", 1),
        time_ns=T0 + 7,
        task=dataclasses.replace(view(2), input_tokens=2**70, updated_ns=T0 + 7, seq=99),
    )

    async def main() -> None:
        sink = PostgresSink(write_method=method)  # type: ignore[arg-type]
        await sink.start(make_ctx(make_config(tmp_path, url)))
        try:
            assert await sink.export([*good[:3], bad, *good[3:]]) is SinkResult.SUCCESS
        finally:
            await sink.shutdown(5)
        [q] = await fetch(url, "SELECT event_id FROM quarantine")
        assert q["event_id"] == bad.event_id
        stored = {r["event_id"] for r in await fetch(url, "SELECT event_id FROM agent_checkpoints")}
        assert stored == {e.event_id for e in good if e.kind in ("Checkpoint", "ContextWarning")}

    run(main)


class _Counted:
    """The writer's real connection, counting the calls that wait on the server."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in ("execute", "executemany", "copy_records_to_table", "fetch"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await attr(*args, **kwargs)

        return counted


def test_a_copy_batch_is_begin_a_copy_per_table_with_rows_and_one_query(pg_server: Any, tmp_path: Path) -> None:
    """Tasks and checkpoints, no artifact, intervention or log: BEGIN, two
    COPYs, the stream's two offered batches in one COPY, and one query with
    the inserts, the stream's lock and rows, and the COMMIT; the stream rows
    keep the order they were offered in."""
    url = pg_server.database()
    events = [e for e in task_stream(1, checkpoints=30, finish=False) if e.kind != "ArtifactAdded"]
    stream = [[f"s{i}" for i in range(n, n + 3)] for n in (0, 3)]

    async def main() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, url)))
        try:
            writer = sink.writer
            assert writer is not None and writer.stream_rows is not None
            assert await sink.export(events[:2]) is SinkResult.SUCCESS
            counted = writer._conn = _Counted(writer._conn)
            offers = [
                writer.stream_rows.offer(
                    [ids, ["Checkpoint"] * 3, ["t"] * 3, [None] * 3, [None] * 3, ["{}"] * 3, [None] * 3], "r"
                )
                for ids in stream
            ]
            assert await sink.export(events[2:]) is SinkResult.SUCCESS
            assert [await o.done for o in offers] == [True, True]
            assert counted.calls == ["execute", *["copy_records_to_table"] * 3, "execute"]
            assert not counted._conn.is_in_transaction()
            writer._conn = counted._conn
        finally:
            await sink.shutdown(5)
        rows = await fetch(url, "SELECT event_id, replica FROM stream_events ORDER BY pos")
        assert [(r["event_id"], r["replica"]) for r in rows] == [(i, "r") for ids in stream for i in ids]
        timeline = [e for e in events if e.kind in ("Checkpoint", "ContextWarning")]
        assert len(await fetch(url, "SELECT 1 FROM agent_checkpoints")) == len(timeline)

    run(main)
