"""One request is one delivery: a resource's scopes are read in the order their spans ended.

The OTLP exporters encode a batch grouped by instrumentation scope, in the
order each scope's first span ended. A framework's tracer that ended a
span before the LLM client's first call then comes first with its root, and
the client's call, which ended before that root, comes after it: the task
finished with no tokens and no model, and the call followed as a
correction. One resource is one process with one clock, so ``serve`` merges
its scopes back into end order; spans of different resources keep the
order they came in (their clocks may disagree: the skew rule).
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.core._sdk import _config

from spanvisor.events import TaskCorrected, TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.decode import decode_request
from spanvisor.testing import InMemorySink


def _one_request(provider: TracerProvider, exported: InMemorySpanExporter) -> bytes:
    """A framework's root over a plan step (its own scope) and a chat call
    of the LLM client's instrumentation (another scope), as one request."""
    framework = provider.get_tracer("example.framework")
    client = provider.get_tracer("openinference.instrumentation.openai")
    with framework.start_as_current_span("invoke_agent triage", attributes={"gen_ai.operation.name": "invoke_agent"}):
        with framework.start_as_current_span("plan"):
            pass
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 80,
        }
        with client.start_as_current_span("chat gpt-4o", attributes=attrs):
            pass
    body: bytes = encode_spans(exported.get_finished_spans()).SerializeToString()
    return body


def _decoded_names(body: bytes) -> list[str]:
    return [s.name for s in decode_request(ExportTraceServiceRequest.FromString(body), body=body).spans]


def test_the_exporter_groups_by_scope_and_the_decoder_reads_in_end_order() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    body = _one_request(provider, exported)
    sent = ExportTraceServiceRequest.FromString(body)
    # The premise: the root's scope came first, the call after it.
    assert [s.name for ss in sent.resource_spans[0].scope_spans for s in ss.spans] == [
        "plan",
        "invoke_agent triage",
        "chat gpt-4o",
    ]
    assert _decoded_names(body) == ["plan", "chat gpt-4o", "invoke_agent triage"]


def test_the_task_finishes_with_its_calls_not_a_correction() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "triage-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    body = _one_request(provider, exported)
    memory = InMemorySink()
    pipeline = Pipeline(_config(), [memory], path="receiver").start()
    try:
        decoded = decode_request(ExportTraceServiceRequest.FromString(body), body=body)
        assert pipeline.submit_spans(decoded.spans)
        assert pipeline.force_flush(30)
    finally:
        pipeline.shutdown(10.0)
    (finished,) = [e for e in memory.events if isinstance(e, TaskFinished)]
    assert (finished.task.input_tokens, finished.task.output_tokens) == (1200, 80)
    assert finished.task.model == "gpt-4o"
    assert not [e for e in memory.events if isinstance(e, TaskCorrected)]


def test_spans_of_different_resources_keep_the_order_they_came_in() -> None:
    """Two services' clocks may disagree: the second resource's span, though
    its end time is earlier, is not moved before the first's."""
    bodies = []
    for service in ("orchestrator", "sub-agent"):
        exported = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exported))
        with provider.get_tracer("lib").start_as_current_span(f"{service} work"):
            pass
        bodies.append(encode_spans(exported.get_finished_spans()))
    req = ExportTraceServiceRequest()
    # The sub-agent's span ended later here; its clock runs behind, say.
    late_clock = bodies[1].resource_spans[0].scope_spans[0].spans[0]
    late_clock.start_time_unix_nano -= 10**9
    late_clock.end_time_unix_nano -= 10**9
    req.resource_spans.extend([bodies[0].resource_spans[0], bodies[1].resource_spans[0]])
    body = req.SerializeToString()
    assert _decoded_names(body) == ["orchestrator work", "sub-agent work"]
