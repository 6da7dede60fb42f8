"""Backpressure: a stalled durable sink -> 503 / UNAVAILABLE with retry info ->
resumed without loss; and the journal replays what was acknowledged."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from agent_traces import request_for, task_spans
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.trace.export import SpanExportResult
from test_http import post

from conftest import RunningReceiver, StubPipeline, local_settings
from spanvisor.config import Config
from spanvisor.events import Event, TaskFinished
from spanvisor.pipeline import Pipeline
from spanvisor.sink import SinkResult
from spanvisor.testing import InMemorySink


class StalledDurableSink(InMemorySink):
    """A durable sink whose exports wait until the test opens the gate."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def export(self, events: Sequence[Event]) -> SinkResult:
        while not self.gate.is_set():
            await asyncio.sleep(0.02)
        return await super().export(events)


def _pipeline(tmp_path: Path, sink: InMemorySink) -> Pipeline:
    config = Config.load(
        env={"SPANVISOR_DATA_DIR": str(tmp_path), "SPANVISOR_QUEUE_SIZE": "200", "SPANVISOR_BATCH_SIZE": "8"}, extra=[]
    )
    return Pipeline(config=config, sinks=[sink], path="receiver").start()


@pytest.mark.slow
def test_http_stalled_sink_503_then_resumed_without_loss(tmp_path: Path) -> None:
    sink = StalledDurableSink()
    pipeline = _pipeline(tmp_path, sink)
    r = RunningReceiver(pipeline, local_settings(tmp_path, retry_after_s=1.0))
    try:
        batches = [task_spans(1, seed=s) for s in range(1, 60)]
        refused = None
        for i, spans in enumerate(batches):
            status, headers, raw = post(r.http_url, request_for(spans).SerializeToString())
            if status == 503:
                refused = i
                assert headers["Retry-After"] == "1"
                assert "full" in Status.FromString(raw).message
                break
            assert status == 200
            # Let the pump turn them into events: the pipeline checks a durable
            # sink's room when spans arrive, not the events still in its inbox.
            time.sleep(0.12)
        assert refused is not None, "a stalled durable sink must push back"
        # The real exporter retries after Retry-After; open the gate meanwhile.
        threading.Timer(1.5, sink.gate.set).start()
        exp = HttpExporter(endpoint=r.http_url, timeout=20)
        for spans in batches[refused:]:
            assert exp.export(spans) is SpanExportResult.SUCCESS
            # Paced like the first loop: see the note on the pump above.
            time.sleep(0.12)
        assert pipeline.force_flush(15)
    finally:
        sink.gate.set()
        r.close()
    finished = [e.task.task_id for e in sink.events if isinstance(e, TaskFinished)]
    assert sorted(finished) == sorted(f"T{s}-0" for s in range(1, 60))
    assert pipeline.stats.total("dropped_total") == 0


@pytest.mark.slow
def test_grpc_unavailable_carries_retry_info(stub: StubPipeline, tmp_path: Path) -> None:
    stub.capacity = 0
    r = RunningReceiver(stub, local_settings(tmp_path, retry_after_s=1.5))
    try:
        with grpc.insecure_channel(r.grpc_target) as ch:
            stub_client = trace_service_pb2_grpc.TraceServiceStub(ch)
            try:
                stub_client.Export(request_for(task_spans(1)), timeout=5)
                raise AssertionError("expected UNAVAILABLE")
            except grpc.RpcError as err:
                assert err.code() is grpc.StatusCode.UNAVAILABLE
                trailers = dict(err.trailing_metadata())
                info = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
                assert info.retry_delay.seconds == 1 and info.retry_delay.nanos == 500_000_000
                status = Status.FromString(trailers["grpc-status-details-bin"])
                assert status.code == 14 and status.details[0].Is(RetryInfo.DESCRIPTOR)
        # The real gRPC exporter honours RetryInfo and gets through once room returns.
        threading.Timer(1.0, lambda: setattr(stub, "capacity", 10**6)).start()
        spans = task_spans(2)
        exp = GrpcExporter(endpoint=r.grpc_target, insecure=True, timeout=20)
        try:
            assert exp.export(spans) is SpanExportResult.SUCCESS
        finally:
            exp.shutdown()
        assert len(stub.spans) == len(spans)
    finally:
        r.close()


def test_grpc_auth(stub: StubPipeline, tmp_path: Path) -> None:
    r = RunningReceiver(stub, local_settings(tmp_path, token="tok"))
    try:
        spans = task_spans(1)
        bad = GrpcExporter(endpoint=r.grpc_target, insecure=True, headers={"authorization": "Bearer no"})
        good = GrpcExporter(endpoint=r.grpc_target, insecure=True, headers={"authorization": "Bearer tok"})
        try:
            assert bad.export(spans) is SpanExportResult.FAILURE
            assert stub.spans == []
            assert good.export(spans) is SpanExportResult.SUCCESS
        finally:
            bad.shutdown()
            good.shutdown()
        assert len(stub.spans) == len(spans)
    finally:
        r.close()


def test_journal_replays_acknowledged_spans_after_a_crash(tmp_path: Path) -> None:
    first = StubPipeline()
    r = RunningReceiver(first, local_settings(tmp_path))
    spans = task_spans(2)
    assert post(r.http_url, request_for(spans).SerializeToString())[0] == 200
    # No graceful stop: the journal is all that survives a killed process.
    r.loop.call_soon_threadsafe(r.loop.stop)
    r.thread.join(5)
    r.receiver.journal.close()  # type: ignore[union-attr]
    second = StubPipeline()
    r2 = RunningReceiver(second, local_settings(tmp_path))
    try:
        ids = {(s.trace_id, s.span_id) for s in first.spans}
        assert {(s.trace_id, s.span_id) for s in second.spans} == ids
        keyed_before = {(s.span_id, tuple(sorted(s.attributes.items()))) for s in first.spans if s.attributes}
        keyed_after = {(s.span_id, tuple(sorted(s.attributes.items()))) for s in second.spans if s.attributes}
        assert keyed_after == keyed_before
        parents = {s.span_id: s.parent_id for s in first.spans}
        assert all(parents[s.span_id] == s.parent_id for s in second.spans)
    finally:
        r2.close()


def test_replay_skips_entries_older_than_retention(tmp_path: Path) -> None:
    first = StubPipeline()
    r = RunningReceiver(first, local_settings(tmp_path, journal_retention_s=0.5))
    assert post(r.http_url, request_for(task_spans(1)).SerializeToString())[0] == 200
    r.close()
    time.sleep(0.6)
    second = StubPipeline()
    r2 = RunningReceiver(second, local_settings(tmp_path, journal_retention_s=0.5))
    try:
        assert second.spans == []
        assert r2.receiver.journal is not None and r2.receiver.journal.size_bytes == 0
    finally:
        r2.close()
