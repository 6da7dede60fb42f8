"""The late-span rule on every path: a model call that ends after its task's
root (async work) gives TaskStarted … TaskFinished, then one TaskCorrected
adding its tokens, with the same final totals in-process (the processor),
through the exporter and through ``serve`` (OTLP/HTTP and gRPC).

Before the rule, ``serve`` sent a model-call Checkpoint after TaskFinished
and the processor never counted the late tokens at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from tests.core._invariants import check_stream, final_states
from tests.core._sdk import Agent, _config

from spanvisor.events import Event, TaskCorrected, TaskFinished
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

TASK = "T-late"
KINDS = ["TaskStarted", "Checkpoint", "TaskFinished", "TaskCorrected"]


def _run_agent(agent: Agent) -> None:
    """One call ends in time (1,000 in); one is still running when the root
    ends, and ends later with 5,000 input tokens."""
    tracer = agent.tracer
    root = tracer.start_span("Diagnose F47", attributes={cv.TASK_NAME: "Diagnose F47", cv.TASK_ID: TASK})
    ctx = trace.set_span_in_context(root)
    chat = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
    first = tracer.start_span("chat", context=ctx, attributes=chat)
    late = tracer.start_span("chat", context=ctx, attributes=chat)
    first.set_attributes({cv.GEN_AI_INPUT: 1_000, cv.GEN_AI_OUTPUT: 100})
    first.end()
    root.end()
    late.set_attributes({cv.GEN_AI_INPUT: 5_000, cv.GEN_AI_OUTPUT: 10})
    late.end()


def _in_process() -> tuple[list[Event], list[ReadableSpan]]:
    memory = InMemorySink()
    agent = Agent([memory])
    try:
        _run_agent(agent)
        assert agent.flush()
        return memory.events, list(agent.exported.get_finished_spans())
    finally:
        agent.close()


def _exporter(spans: Sequence[ReadableSpan]) -> list[Event]:
    memory = InMemorySink()
    exporter = SpanvisorSpanExporter(sinks=[memory], config=_config())
    try:
        for s in spans:  # one export per span, as a SimpleSpanProcessor calls it
            exporter.export([s])
        assert exporter.force_flush(10_000)
    finally:
        exporter.pipeline.shutdown(2.0)
    return memory.events


def _check(events: list[Event]) -> None:
    check_stream(events, all_finished=True)
    assert [e.kind for e in events] == KINDS
    finished, corrected = events[2], events[3]
    assert isinstance(finished, TaskFinished) and isinstance(corrected, TaskCorrected)
    assert finished.task.input_tokens == 1_000
    assert (corrected.added_input_tokens, corrected.added_output_tokens) == (5_000, 10)
    assert (corrected.task.input_tokens, corrected.task.output_tokens) == (6_000, 110)
    assert corrected.task.status == "complete" and corrected.task.ended_ns == finished.task.ended_ns
    assert corrected.task.cost_usd > finished.task.cost_usd


def test_a_call_ending_after_its_root_is_one_correction_on_every_path(
    receiver: Any, pipeline: Pipeline, sink: InMemorySink
) -> None:
    in_process, spans = _in_process()
    exported = _exporter(spans)
    assert HttpExporter(endpoint=receiver.http_url).export(spans) is SpanExportResult.SUCCESS
    assert pipeline.force_flush(10)
    served = list(sink.events)
    runs = {"processor": in_process, "exporter": exported, "serve (HTTP)": served}
    for name, events in runs.items():
        try:
            _check(events)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {[e.kind for e in events]}") from exc
    want = final_states(in_process)
    assert want[TASK]["input_tokens"] == 6_000
    for name, events in runs.items():
        assert final_states(events) == want, name
        assert [e.event_id for e in events] == [e.event_id for e in in_process], name


def test_serve_over_grpc_says_the_same(receiver: Any, pipeline: Pipeline, sink: InMemorySink) -> None:
    in_process, spans = _in_process()
    exp = GrpcExporter(endpoint=receiver.grpc_target, insecure=True)
    try:
        assert exp.export(spans) is SpanExportResult.SUCCESS
    finally:
        exp.shutdown()
    assert pipeline.force_flush(10)
    _check(list(sink.events))
    assert final_states(sink.events) == final_states(in_process)
