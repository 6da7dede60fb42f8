"""OTLP/gRPC status codes: UNAUTHENTICATED before any parsing, INVALID_ARGUMENT
for a body that is not an ExportTraceServiceRequest and for too many spans,
and the request counters by transport and outcome."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from agent_traces import request_for, task_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from conftest import RunningReceiver, finished, local_settings, requests
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.testing import InMemorySink

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _export_raw(target: str, body: bytes, token: str | None = None) -> grpc.StatusCode:
    """Send ``body`` as is (no client-side serialization) and return the status code."""
    metadata = (("authorization", token),) if token is not None else None
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        try:
            call(body, timeout=10, metadata=metadata)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


@pytest.fixture
def secured(pipeline: Pipeline, tmp_path: Path) -> Iterator[RunningReceiver]:
    r = RunningReceiver(pipeline, local_settings(tmp_path, token="tok"))
    yield r
    r.close()


def test_grpc_auth(secured: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    spans = task_spans(1)
    body = request_for(spans).SerializeToString()
    assert _export_raw(secured.grpc_target, body) is grpc.StatusCode.UNAUTHENTICATED
    assert _export_raw(secured.grpc_target, body, "Bearer no") is grpc.StatusCode.UNAUTHENTICATED
    assert _export_raw(secured.grpc_target, body, "Basic tok") is grpc.StatusCode.UNAUTHENTICATED
    assert requests(pipeline, "grpc", "unauthenticated") == 3
    assert pipeline.stats.value("spans_received_total", path="receiver") == 0
    # RFC 7235: the scheme is case-insensitive.
    assert _export_raw(secured.grpc_target, body, "bearer tok") is grpc.StatusCode.OK
    bad = GrpcExporter(endpoint=secured.grpc_target, insecure=True, headers={"authorization": "Bearer no"})
    good = GrpcExporter(endpoint=secured.grpc_target, insecure=True, headers={"authorization": "Bearer tok"})
    try:
        assert bad.export(spans) is SpanExportResult.FAILURE
        assert good.export(spans) is SpanExportResult.SUCCESS
    finally:
        bad.shutdown()
        good.shutdown()
    assert requests(pipeline, "grpc", "unauthenticated") == 4
    assert requests(pipeline, "grpc", "ok") == 2
    assert pipeline.force_flush(10)
    assert finished(sink) == ["T1-0"]  # sent twice, the same spans: one task, finished once


def test_malformed_body_is_invalid_argument(receiver: RunningReceiver, pipeline: Pipeline) -> None:
    for body in (b"\xff\xff\xff", b"\x0a\x05abc", b"\x0a" + b"\xff" * 11):
        assert _export_raw(receiver.grpc_target, body) is grpc.StatusCode.INVALID_ARGUMENT, body
    assert requests(pipeline, "grpc", "bad_request") == 3
    assert _export_raw(receiver.grpc_target, b"") is grpc.StatusCode.OK  # an empty request is valid
    assert requests(pipeline, "grpc", "ok") == 1


def test_token_is_checked_before_parsing(secured: RunningReceiver, pipeline: Pipeline) -> None:
    # A malformed body without the token: the answer is about the token, and
    # nothing was parsed (no bad_request counted).
    assert _export_raw(secured.grpc_target, b"\xff\xff\xff", "Bearer no") is grpc.StatusCode.UNAUTHENTICATED
    assert requests(pipeline, "grpc", "unauthenticated") == 1
    assert requests(pipeline, "grpc", "bad_request") == 0
    assert _export_raw(secured.grpc_target, b"\xff\xff\xff", "Bearer tok") is grpc.StatusCode.INVALID_ARGUMENT


def test_too_many_spans_is_invalid_argument(pipeline: Pipeline, sink: InMemorySink, tmp_path: Path) -> None:
    spans = task_spans(1)
    r = RunningReceiver(pipeline, local_settings(tmp_path, max_spans=len(spans) - 1))
    try:
        with grpc.insecure_channel(r.grpc_target) as ch:
            call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as err:
                call(request_for(spans).SerializeToString(), timeout=10)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"{len(spans)} spans in one request" in (err.value.details() or "")
        assert requests(pipeline, "grpc", "too_large") == 1
    finally:
        r.close()
    assert sink.events == []
