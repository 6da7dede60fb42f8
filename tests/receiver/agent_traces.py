"""Realistic agent traces made with the real OTel SDK, for tests and the benchmark.

A task is an ``invoke_agent`` root stamped with ``agent.task.id``, a few model
calls with GenAI usage, tool calls, checkpoint spans, and many ordinary spans
(HTTP, database, framework internals) with no agent key: in real agent traces
those are most spans.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class Capture(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def make_provider(service: str = "agent-svc") -> tuple[TracerProvider, Capture]:
    cap = Capture()
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(cap))
    return tp, cap


def _plain(tracer: trace.Tracer, rng: random.Random, n: int) -> None:
    for i in range(n):
        with tracer.start_as_current_span(f"GET /api/{i}") as s:
            s.set_attributes(
                {
                    "http.request.method": "GET",
                    "url.full": f"https://example.com/api/{rng.randrange(10**6)}",
                    "http.response.status_code": 200,
                    "server.address": "example.com",
                    "server.port": 443,
                    "network.protocol.version": "1.1",
                    "user_agent.original": "python-httpx/0.27",
                    "db.system": "postgresql",
                }
            )


def agent_task(
    tracer: trace.Tracer,
    task_id: str,
    rng: random.Random,
    checkpoints: int = 3,
    plain_per_step: int = 6,
    agent_id: str = "rivet",
) -> None:
    """One task: root, model calls, tools, checkpoints, lots of plain spans."""
    with tracer.start_as_current_span("invoke_agent rivet") as root:
        root_id = format(root.get_span_context().span_id, "016x")
        root.set_attributes(
            {
                "gen_ai.operation.name": "invoke_agent",
                "agent.task.id": task_id,
                "agent.task.name": f"Diagnose {task_id}",
                "agent.id": agent_id,
                "agent.repo": "acme/plant",
            }
        )
        stamp = {"agent.task.id": task_id, "agent.task.root_span_id": root_id, "agent.id": agent_id}
        for step in range(checkpoints):
            with tracer.start_as_current_span("chat claude-sonnet-4") as m:
                m.set_attributes(
                    {
                        **stamp,
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "claude-sonnet-4",
                        "gen_ai.usage.input_tokens": 1000 * (step + 1),
                        "gen_ai.usage.output_tokens": 100,
                    }
                )
                _plain(tracer, rng, plain_per_step)
            with tracer.start_as_current_span("step") as c:
                c.set_attributes({**stamp, "agent.progress": int(100 * (step + 1) / checkpoints)})
                c.add_event("agent.checkpoint", {"agent.message": f"step {step} of {task_id}"})
                _plain(tracer, rng, plain_per_step)
        root.set_attribute("agent.status", "complete")


def request_for(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    return encode_spans(spans)  # type: ignore[no-any-return]


def task_spans(n_tasks: int, seed: int = 1, **kw: object) -> list[ReadableSpan]:
    tp, cap = make_provider()
    tracer = tp.get_tracer("agent")
    rng = random.Random(seed)
    for i in range(n_tasks):
        agent_task(tracer, f"T{seed}-{i}", rng, **kw)  # type: ignore[arg-type]
    tp.shutdown()
    return cap.spans
