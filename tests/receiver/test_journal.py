"""The span journal across restarts: a crash replays what was acknowledged;
a graceful stop after which every sink had everything replays nothing, yet
the tasks still open come back; a stop that could not deliver leaves the
journal unmarked, so the next start sends it again."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from agent_traces import request_for, task_spans
from test_http import post

from conftest import RunningReceiver, finished, local_settings, make_pipeline
from spanvisor.config import Config
from spanvisor.events import Event, TaskFinished, TaskStarted
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.journal import SpanJournal
from spanvisor.receiver.serve import tracker_rebuild
from spanvisor.sink import BaseSink, SinkResult
from spanvisor.testing import InMemorySink


class NeverDelivers(BaseSink):
    """Slack down for good: every export asks to be retried."""

    name = "never"

    async def export(self, events: Sequence[Event]) -> SinkResult:
        return SinkResult.RETRY


class RejectsAll(BaseSink):
    """Rejects every batch for good: a replay would be rejected again."""

    name = "rejects"

    async def export(self, events: Sequence[Event]) -> SinkResult:
        return SinkResult.FAILURE


def _unstarted(tmp_path: Path, sink: InMemorySink) -> Pipeline:
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path / "data")}, extra=[])
    return Pipeline(config=config, sinks=[sink], path="receiver")


def _restart(tmp_path: Path, sink: InMemorySink, **kw: object) -> tuple[Pipeline, RunningReceiver]:
    """As `serve` starts: rebuild the tracker, then start the pipeline, then replay."""
    pipeline = _unstarted(tmp_path, sink)
    r = RunningReceiver(
        pipeline,
        local_settings(tmp_path, **kw),
        rebuild=tracker_rebuild(pipeline),
        start_pipeline=pipeline.start,
    )
    return pipeline, r


def test_crash_replays_acknowledged_spans(tmp_path: Path) -> None:
    first_sink = InMemorySink()
    first = make_pipeline(tmp_path / "data", [first_sink])
    r = RunningReceiver(first, local_settings(tmp_path))
    assert post(r.http_url, request_for(task_spans(2)).SerializeToString())[0] == 200
    r.crash()
    first.shutdown(5)
    second_sink = InMemorySink()
    second, r2 = _restart(tmp_path, second_sink)
    try:
        assert second.force_flush(10)
        assert finished(second_sink) == finished(first_sink) == ["T1-0", "T1-1"]
        # The replayed spans give the very same events (stable ids).
        assert [e.event_id for e in second_sink.events] == [e.event_id for e in first_sink.events]
    finally:
        r2.close()


def test_graceful_restart_resends_nothing_and_keeps_open_tasks(tmp_path: Path) -> None:
    spans = task_spans(1, seed=4)
    children, root = spans[:-1], spans[-1:]
    assert root[0].name.startswith("invoke_agent")
    first_sink = InMemorySink()
    first = make_pipeline(tmp_path / "data", [first_sink])
    r = RunningReceiver(first, local_settings(tmp_path))
    assert post(r.http_url, request_for(children).SerializeToString())[0] == 200
    r.close()
    assert r.receiver.delivered == (True, "every sink delivered everything")
    assert isinstance(first_sink.events[0], TaskStarted)
    assert not first_sink.of_type(TaskFinished)  # the root has not ended yet

    second_sink = InMemorySink()
    second, r2 = _restart(tmp_path, second_sink)
    try:
        assert second.force_flush(10)
        assert second_sink.events == []  # nothing the first process delivered is sent again
        assert post(r2.http_url, request_for(root).SerializeToString())[0] == 200
        assert second.force_flush(10)
    finally:
        r2.close()
    # The task was open across the restart: it finishes once, not started again,
    # with the model calls made before the restart in its totals.
    kinds = [type(e) for e in second_sink.events]
    assert TaskStarted not in kinds and kinds[-1] is TaskFinished
    final = second_sink.events[-1].task
    assert final.status == "complete" and final.task_name == "Diagnose T4-0"
    assert final.input_tokens == sum(1000 * (step + 1) for step in range(3))


def test_stop_that_could_not_deliver_is_replayed(tmp_path: Path) -> None:
    first = make_pipeline(tmp_path / "data", [NeverDelivers()])
    r = RunningReceiver(first, local_settings(tmp_path, shutdown_timeout_s=2.0))
    assert post(r.http_url, request_for(task_spans(1)).SerializeToString())[0] == 200
    r.close()
    assert r.receiver.delivered is not None and not r.receiver.delivered[0]
    second_sink = InMemorySink()
    second, r2 = _restart(tmp_path, second_sink)
    try:
        assert second.force_flush(10)
        assert finished(second_sink) == ["T1-0"]
    finally:
        r2.close()


def test_permanently_rejected_events_do_not_block_the_mark(tmp_path: Path) -> None:
    first = make_pipeline(tmp_path / "data", [RejectsAll()])
    r = RunningReceiver(first, local_settings(tmp_path))
    assert post(r.http_url, request_for(task_spans(1)).SerializeToString())[0] == 200
    r.close()
    assert first.stats.value("dropped_total", reason="sink_failure", sink="rejects") > 0
    assert r.receiver.delivered == (True, "every sink delivered everything")


def test_replay_skips_entries_older_than_retention(tmp_path: Path) -> None:
    first = make_pipeline(tmp_path / "data", [InMemorySink()])
    r = RunningReceiver(first, local_settings(tmp_path, journal_retention_s=0.5))
    assert post(r.http_url, request_for(task_spans(1)).SerializeToString())[0] == 200
    r.crash()
    first.shutdown(5)
    time.sleep(0.6)  # the entry ages past the retention: wall-clock time is the subject here
    second_sink = InMemorySink()
    second, r2 = _restart(tmp_path, second_sink, journal_retention_s=0.5)
    try:
        assert second.force_flush(10)
        assert second_sink.events == []
        assert r2.receiver.journal is not None and r2.receiver.journal.size_bytes == 0
    finally:
        r2.close()


def test_journal_from_before_the_mark_is_migrated(tmp_path: Path) -> None:
    """A journal written before AUTOINCREMENT keeps its entries, and ids are
    never reused afterwards, even once it has been emptied."""
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE span_journal (id INTEGER PRIMARY KEY, recv_ns INTEGER NOT NULL,"
        " keyed BLOB NOT NULL, links BLOB NOT NULL);"
    )
    conn.execute("INSERT INTO span_journal VALUES (7, ?, x'', x'00')", (time.time_ns(),))
    conn.commit()
    conn.close()

    async def main() -> None:
        journal = SpanJournal(path, 10**9)
        await asyncio.to_thread(journal.open)
        try:
            assert [row[0] for row in journal.read(0, 0)] == [7]
            assert await journal.mark_delivered() == 7
            assert await journal.trim(time.time_ns() + 1) == 1  # empty now
            assert await journal.append(b"", b"\x01") == 8  # not 1: the mark cannot hide it
        finally:
            journal.close()

    asyncio.run(main())
    reopened = SpanJournal(path, 10**9)
    reopened.open()
    try:
        assert reopened.delivered_through == 7
    finally:
        reopened.close()
