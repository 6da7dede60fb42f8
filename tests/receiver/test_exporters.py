"""The real OTel Python exporters against the receiver, over HTTP and gRPC."""

from __future__ import annotations

from agent_traces import task_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from conftest import RunningReceiver, finished
from spanvisor.events import Checkpoint, TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.testing import InMemorySink


def _check(pipeline: Pipeline, sink: InMemorySink, spans: list) -> None:  # type: ignore[type-arg]
    assert pipeline.force_flush(10)
    # Every span arrived, keyed or not.
    assert pipeline.stats.value("spans_received_total", path="receiver") == len(spans)
    roots = [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "invoke_agent"]
    task_ids = sorted(str(s.attributes["agent.task.id"]) for s in roots)  # type: ignore[index]
    assert finished(sink) == task_ids
    for task_id in task_ids:
        events = sink.for_task(task_id)
        messages = {e.task.message for e in events if isinstance(e, Checkpoint) and e.source == "event"}
        assert messages == {f"step {k} of {task_id}" for k in range(3)}
        final = events[-1]
        assert isinstance(final, TaskFinished) and final.task.status == "complete"
        assert final.task.agent_id == "rivet" and final.task.repo == "acme/plant"
        assert final.task.input_tokens == 6000 and final.task.output_tokens == 300


def test_http_protobuf_exporter(receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    spans = task_spans(3)
    exp = HttpExporter(endpoint=receiver.http_url)
    assert exp.export(spans) is SpanExportResult.SUCCESS
    _check(pipeline, sink, spans)


def test_http_gzip_exporter(receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    spans = task_spans(2, seed=7)
    exp = HttpExporter(endpoint=receiver.http_url, compression=Compression.Gzip)
    assert exp.export(spans) is SpanExportResult.SUCCESS
    _check(pipeline, sink, spans)


def test_grpc_exporter(receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink) -> None:
    spans = task_spans(3, seed=3)
    exp = GrpcExporter(endpoint=receiver.grpc_target, insecure=True)
    try:
        assert exp.export(spans) is SpanExportResult.SUCCESS
    finally:
        exp.shutdown()
    _check(pipeline, sink, spans)
