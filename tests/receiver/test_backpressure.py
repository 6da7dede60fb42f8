"""Backpressure: a stalled durable sink -> 503 / UNAVAILABLE with retry info ->
resumed without loss, through the real exporters' retries."""

from __future__ import annotations

import threading
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
from tests.waiting import wait_until

from conftest import (
    RunningReceiver,
    StalledDurableSink,
    finished,
    local_settings,
    make_pipeline,
    requests,
)
from spanvisor.pipeline.pipeline import Pipeline

# A small durable queue, so a few tasks fill it to its admission bound (80 %).
SMALL_QUEUE = {"SPANVISOR_QUEUE_SIZE": "200", "SPANVISOR_BATCH_SIZE": "8"}


def _pumped(pipeline: Pipeline) -> None:
    # The pipeline admits spans by the durable queue's room when they arrive,
    # not by the events still waiting in its inbox: let the pump turn them
    # into events before sending more, as a steady client would. A batch the
    # stalled sink has no room for stays in the inbox while the pipeline
    # pushes back: the next request finds that out.
    wait_until(
        lambda: pipeline.stats.value("inbox_depth") == 0 or not pipeline.accepting(1),
        what="the pipeline to pump its inbox or push back",
    )


@pytest.mark.slow
def test_http_stalled_sink_503_then_resumed_without_loss(tmp_path: Path) -> None:
    sink = StalledDurableSink()
    pipeline = make_pipeline(tmp_path / "data", [sink], **SMALL_QUEUE)
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
            _pumped(pipeline)
        assert refused is not None, "a stalled durable sink must push back"
        assert requests(pipeline, "http", "retry") == 1

        # The real exporter retries after Retry-After; the gate opens meanwhile.
        # Opened once that first try was refused (not on a timer: a loaded
        # machine could start the exporter after the gate opened).
        def open_after_refusal() -> None:
            wait_until(lambda: requests(pipeline, "http", "retry") >= 2, 60, "the exporter's refused first try")
            sink.gate.set()

        threading.Thread(target=open_after_refusal, daemon=True).start()
        exp = HttpExporter(endpoint=r.http_url, timeout=20)
        for spans in batches[refused:]:
            assert exp.export(spans) is SpanExportResult.SUCCESS
            _pumped(pipeline)
        assert pipeline.force_flush(15)
    finally:
        sink.gate.set()
        r.close()
    assert finished(sink) == sorted(f"T{s}-0" for s in range(1, 60))
    assert pipeline.stats.total("dropped_total") == 0
    assert requests(pipeline, "http", "retry") >= 2  # the exporter's first try was refused too


@pytest.mark.slow
def test_grpc_unavailable_carries_retry_info(tmp_path: Path) -> None:
    sink = StalledDurableSink()
    pipeline = make_pipeline(tmp_path / "data", [sink], **SMALL_QUEUE)
    r = RunningReceiver(pipeline, local_settings(tmp_path, retry_after_s=1.5))
    try:
        sent: list[str] = []
        with grpc.insecure_channel(r.grpc_target) as ch:
            client = trace_service_pb2_grpc.TraceServiceStub(ch)
            for seed in range(1, 60):
                try:
                    client.Export(request_for(task_spans(1, seed=seed)), timeout=5)
                except grpc.RpcError as err:
                    assert err.code() is grpc.StatusCode.UNAVAILABLE
                    trailers = dict(err.trailing_metadata())
                    info = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
                    assert info.retry_delay.seconds == 1 and info.retry_delay.nanos == 500_000_000
                    status = Status.FromString(trailers["grpc-status-details-bin"])
                    assert status.code == 14 and status.details[0].Is(RetryInfo.DESCRIPTOR)
                    break
                sent.append(f"T{seed}-0")
                _pumped(pipeline)
            else:
                raise AssertionError("a stalled durable sink must push back")
        assert requests(pipeline, "grpc", "retry") == 1
        # The real gRPC exporter honours RetryInfo and gets through once room returns.
        threading.Timer(1.0, sink.gate.set).start()
        exp = GrpcExporter(endpoint=r.grpc_target, insecure=True, timeout=20)
        try:
            assert exp.export(task_spans(1, seed=99)) is SpanExportResult.SUCCESS
        finally:
            exp.shutdown()
        assert pipeline.force_flush(15)
    finally:
        sink.gate.set()
        r.close()
    assert finished(sink) == sorted([*sent, "T99-0"])
    assert requests(pipeline, "grpc", "ok") == len(sent) + 1
