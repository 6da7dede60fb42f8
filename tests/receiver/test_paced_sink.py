"""A paced sink (the event stream): the receiver waits for its queue while it
delivers, and stops waiting for it once it delivers nothing.

A stream that encodes slower than spans arrive must push back (503) rather
than lose events every client would miss; a stream whose database is away
must not refuse spans the audit trail can take, and counts what it drops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from agent_traces import request_for, task_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from test_http import post
from tests.waiting import wait_until

from conftest import RunningReceiver, finished, local_settings, make_pipeline
from spanvisor.events import Event
from spanvisor.pipeline.rate import STALE_S
from spanvisor.sink import SinkResult
from spanvisor.testing import InMemorySink

SMALL_QUEUE = {"SPANVISOR_QUEUE_SIZE": "200", "SPANVISOR_BATCH_SIZE": "8"}


class SlowPacedSink(InMemorySink):
    """Delivers, slower than a client sends: a stream's encoder behind."""

    name = "slowpaced"
    paced = True

    async def export(self, events: Sequence[Event]) -> SinkResult:
        await asyncio.sleep(0.02)
        return await super().export(events)


class StoppedPacedSink(InMemorySink):
    """Delivers its first batch, then nothing until the gate opens: a stream
    whose database feed went away."""

    name = "stoppedpaced"
    paced = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.calls = 0

    async def export(self, events: Sequence[Event]) -> SinkResult:
        self.calls += 1
        while self.calls > 1 and not self.gate.is_set():
            await asyncio.sleep(0.02)
        return await super().export(events)


@pytest.mark.slow
def test_a_paced_sink_behind_pushes_back_and_loses_nothing(tmp_path: Path) -> None:
    sink = SlowPacedSink()
    pipeline = make_pipeline(tmp_path / "data", [sink], **SMALL_QUEUE)
    r = RunningReceiver(pipeline, local_settings(tmp_path, retry_after_s=1.0))
    # The exporter's retries of pushed-back requests fit in its timeout: a
    # loaded machine slows the sink it waits for.
    exp = HttpExporter(endpoint=r.http_url, timeout=90)
    try:
        for seed in range(1, 80):
            assert exp.export(task_spans(1, seed=seed)) is SpanExportResult.SUCCESS
        assert pipeline.force_flush(30)
    finally:
        exp.shutdown()
        r.close()
    assert finished(sink) == sorted(f"T{s}-0" for s in range(1, 80))
    # Unpaced, this sink's queue overflowed and lost most tasks' events.
    assert pipeline.stats.total("dropped_total") == 0


@pytest.mark.slow
def test_a_paced_sink_that_stopped_delivering_is_not_waited_for(tmp_path: Path) -> None:
    sink = StoppedPacedSink()
    pipeline = make_pipeline(tmp_path / "data", [sink], **SMALL_QUEUE)
    r = RunningReceiver(pipeline, local_settings(tmp_path, retry_after_s=1.0))
    try:
        assert post(r.http_url, request_for(task_spans(1, seed=1)).SerializeToString())[0] == 200
        wait_until(lambda: sink.calls >= 2, 20, "the sink's second export (where it stops)")
        # Past the rate's staleness the sink no longer counts as delivering.
        time.sleep(STALE_S + 0.5)

        def dropped() -> float:
            return float(pipeline.stats.value("dropped_total", reason="queue_full", sink="stoppedpaced"))

        # Until its queue overflows, and a few requests more with it full
        # (each request takes a while to build: no more than that is sent).
        statuses: list[int] = []
        full_at: int | None = None
        for seed in range(2, 60):
            statuses.append(post(r.http_url, request_for(task_spans(20, seed=seed)).SerializeToString())[0])
            if full_at is None and dropped() > 0:
                full_at = len(statuses)
            if full_at is not None and len(statuses) >= full_at + 3:
                break
        assert set(statuses) == {200}, "spans refused for a paced sink that delivers nothing"
        wait_until(lambda: dropped() > 0, 20, "the stopped sink's drops counted")
    finally:
        sink.gate.set()
        r.close()
