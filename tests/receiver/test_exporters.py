"""The real OTel Python exporters against the receiver, over HTTP and gRPC."""

from __future__ import annotations

from agent_traces import task_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from conftest import RunningReceiver, StubPipeline


def _check(stub: StubPipeline, spans: list) -> None:  # type: ignore[type-arg]
    got = {(s.trace_id, s.span_id) for s in stub.spans}
    want = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")) for s in spans}
    assert got == want
    keyed = [s for s in stub.spans if s.attributes]
    assert keyed, "keyed spans keep their attributes"
    roots = [s for s in keyed if s.attributes.get("gen_ai.operation.name") == "invoke_agent"]
    assert roots and all(r.resource.get("service.name") == "agent-svc" for r in roots)
    cp = [s for s in keyed if any(e.name == "agent.checkpoint" for e in s.events)]
    assert cp and all(s.attributes["agent.task.root_span_id"] for s in cp)


def test_http_protobuf_exporter(receiver: RunningReceiver, stub: StubPipeline) -> None:
    spans = task_spans(3)
    exp = HttpExporter(endpoint=receiver.http_url)
    assert exp.export(spans) is SpanExportResult.SUCCESS
    _check(stub, spans)


def test_http_gzip_exporter(receiver: RunningReceiver, stub: StubPipeline) -> None:
    spans = task_spans(2, seed=7)
    exp = HttpExporter(endpoint=receiver.http_url, compression=Compression.Gzip)
    assert exp.export(spans) is SpanExportResult.SUCCESS
    _check(stub, spans)


def test_grpc_exporter(receiver: RunningReceiver, stub: StubPipeline) -> None:
    spans = task_spans(3, seed=3)
    exp = GrpcExporter(endpoint=receiver.grpc_target, insecure=True)
    try:
        assert exp.export(spans) is SpanExportResult.SUCCESS
    finally:
        exp.shutdown()
    _check(stub, spans)
