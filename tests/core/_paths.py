"""The three real paths an agent's spans take into spanvisor, for tests.

* **processor**: ``SpanvisorSpanProcessor`` on a real TracerProvider (in-process, live);
* **exporter**: the ended SDK spans handed to ``SpanvisorSpanExporter`` in end order;
* **receiver**: the spans encoded as OTLP protobuf by the OTel exporter's own
  encoder and decoded by the receiver as HTTP and gRPC bodies are (through
  the scan of the body as received), in random batches, into a receiver
  ``Pipeline``.

Specs (``_trees.SpanSpec``) are played with their own ids and times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Status, StatusCode

from spanvisor.events import Event
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.decode import decode_request
from spanvisor.testing import InMemorySink

from ._sdk import _config
from ._trees import SpanSpec

INT64 = 2**63 - 1

# Generous: a drawn example may carry a million-character message, and with
# the suite in several processes on 2 cores a flush of it can take seconds.
# A pipeline that is done returns at once, so a passing run waits no longer.
FLUSH_S = 30
SHUTDOWN_S = 10.0


class _Ids(IdGenerator):
    """Hands the SDK the ids of the spec being played."""

    def __init__(self) -> None:
        self.span_id = 0
        self.trace_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


def _value(v: Any) -> Any:
    """What an agent can set through the SDK and OTLP can carry (the junk the
    generator also makes is covered by the tracker-level properties)."""
    if isinstance(v, bool | float):
        return None if isinstance(v, float) and not math.isfinite(v) else v
    if isinstance(v, int):
        return v if -INT64 <= v <= INT64 else None
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return v
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return v
    return None


def _attrs(a: dict[str, Any]) -> dict[str, Any]:
    return {k: x for k, v in a.items() if (x := _value(v)) is not None}


def clean_specs(specs: list[SpanSpec]) -> list[SpanSpec]:
    """The specs as the SDK will hold them, so the checker judges what was sent."""
    for s in specs:
        s.start_attrs = _attrs(s.start_attrs)
        s.updates = [(t, _attrs(u)) for t, u in s.updates]
        s.events = [type(e)(e.name, e.time_ns, _attrs(dict(e.attributes))) for e in s.events]
        s.status_message = s.status_message if isinstance(_value(s.status_message), str) else None
    return specs


def play(specs: Sequence[SpanSpec], provider: TracerProvider, ids: _Ids) -> None:
    """Run the specs on the provider in time order, with their own ids and times."""
    tracer = provider.get_tracer("agent")
    steps: list[tuple[int, int, int, str, Any]] = []
    for i, s in enumerate(specs):
        # In true time; each span reports its own clock's times (clock skew).
        steps.append((s.true(s.start_ns), 0, i, "start", s))
        for t, u in s.updates:
            steps.append((s.true(t), 1, i, "update", (s, u)))
        for e in s.events:
            steps.append((s.true(e.time_ns), 2, i, "event", (s, e)))
        steps.append((s.true(s.end_ns), 3, -s.true(s.start_ns), "end", s))
    steps.sort(key=lambda x: (x[0], x[1], x[2]))
    live: dict[str, Any] = {}
    for _, _, _, kind, item in steps:
        if kind == "start":
            s = item
            ids.span_id, ids.trace_id = int(s.span_id, 16), int(s.trace_id, 16)
            parent = live.get(s.parent_id) if s.parent_id else None
            ctx = trace.set_span_in_context(parent) if parent is not None else None
            live[s.span_id] = tracer.start_span(s.name, context=ctx, attributes=s.start_attrs, start_time=s.start_ns)
        elif kind == "update":
            s, u = item
            live[s.span_id].set_attributes(u)
        elif kind == "event":
            s, e = item
            live[s.span_id].add_event(e.name, dict(e.attributes), timestamp=e.time_ns)
        else:
            s = item
            if s.error:
                live[s.span_id].set_status(Status(StatusCode.ERROR, s.status_message))
            live[s.span_id].end(end_time=s.end_ns)


def processor_run(
    specs: Sequence[SpanSpec], *, alone: bool = False, stamp: str = "auto"
) -> tuple[list[Event], list[ReadableSpan]]:
    """The processor's events and the spans another processor got (none when
    ``alone``: then, at the default ``stamp``, the hooks hand every span over
    as it is and the pipeline's thread tells its task)."""
    ids = _Ids()
    memory = InMemorySink()
    processor = SpanvisorSpanProcessor(sinks=[memory], config=_config(SPANVISOR_STAMP_SPANS=stamp))
    captured = InMemorySpanExporter()
    provider = TracerProvider(id_generator=ids, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    if not alone:
        provider.add_span_processor(SimpleSpanProcessor(captured))
    try:
        play(specs, provider, ids)
        assert processor.force_flush(FLUSH_S * 1000)
    finally:
        processor.pipeline.shutdown(SHUTDOWN_S)
    return memory.events, list(captured.get_finished_spans())


def unstamped_spans(specs: Sequence[SpanSpec]) -> list[ReadableSpan]:
    ids = _Ids()
    captured = InMemorySpanExporter()
    provider = TracerProvider(id_generator=ids, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(captured))
    play(specs, provider, ids)
    return list(captured.get_finished_spans())


def exporter_run(spans: Sequence[ReadableSpan]) -> list[Event]:
    memory = InMemorySink()
    exporter = SpanvisorSpanExporter(sinks=[memory], config=_config())
    try:
        exporter.export(spans)
        assert exporter.force_flush(FLUSH_S * 1000)
    finally:
        exporter.pipeline.shutdown(SHUTDOWN_S)
    return memory.events


def in_scopes(spans: Sequence[ReadableSpan], rng: random.Random, n: int = 3) -> list[ReadableSpan]:
    """The same spans, each from one of ``n`` instrumentation scopes drawn
    at random (a framework's tracer and the LLM client's, say): the OTLP
    encoder then groups every request by scope."""
    scopes = [InstrumentationScope(f"example.scope{i}") for i in range(n)]
    return [
        ReadableSpan(
            name=s.name,
            context=s.context,
            parent=s.parent,
            resource=s.resource,
            attributes=s.attributes,
            events=s.events,
            links=s.links,
            kind=s.kind,
            status=s.status,
            start_time=s.start_time,
            end_time=s.end_time,
            instrumentation_scope=rng.choice(scopes),
        )
        for s in spans
    ]


def receiver_run(spans: Sequence[ReadableSpan], rng: random.Random) -> list[Event]:
    memory = InMemorySink()
    pipeline = Pipeline(_config(), [memory], path="receiver").start()
    try:
        i = 0
        while i < len(spans):
            n = rng.randint(1, 8)
            body = encode_spans(list(spans[i : i + n])).SerializeToString()
            # As the HTTP and gRPC handlers do: the body as received is scanned.
            decoded = decode_request(ExportTraceServiceRequest.FromString(body), body=body)
            assert decoded.rejected == 0, decoded.reasons
            assert pipeline.submit_spans(decoded.spans)
            i += n
        assert pipeline.force_flush(FLUSH_S)
    finally:
        pipeline.shutdown(SHUTDOWN_S)
    return memory.events
