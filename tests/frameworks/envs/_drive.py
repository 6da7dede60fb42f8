"""Runs a framework scenario's cases in that framework's venv
(tests/frameworks/_env.py starts it there) and writes what came of them.

    python _drive.py SCENARIO OUT_DIR PATH:CASE[=OTLP_URL]...

One global provider (the frameworks with native telemetry trace only to the
global one), with ``service.name`` and gpt-4o's 10,000-token window as the
harness sets them, whose spans go to the current run's path, as the
harness builds each. On ``processor`` and ``exporter`` spanvisor runs here,
a pipeline per run, and writes its events to OUT_DIR/PATH-CASE.events.jsonl
and its console card to .console.txt; on ``serve`` and ``stamped`` the
spans go over OTLP/HTTP to the run's URL.
Each case also writes .result.json (its output, or its error),
.spans.jsonl (each span as it ended) and .live.json (on ``processor``, case ``ok``, what
the run's first tool call saw of its task mid-run: _live.py).
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import _live
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanvisor.codec import event_to_dict
from spanvisor.config import Config
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.testing import InMemorySink
from spanvisor.tracking import pricetable
from spanvisor_console import ConsoleSink

SERVICE = "frameworks-test-service"
WINDOW = 10_000


def _span(s: ReadableSpan) -> dict[str, Any]:
    parent = s.parent.span_id if s.parent is not None else None
    return {
        "name": s.name,
        "span_id": f"{s.context.span_id:016x}" if s.context else None,
        "parent_id": f"{parent:016x}" if parent else None,
        "kind": s.kind.name,
        "start_ns": s.start_time,
        "end_ns": s.end_time,
        "status": s.status.status_code.name,
        "description": s.status.description,
        "attributes": {
            k: v if isinstance(v, (str, int, float, bool)) else list(v) for k, v in (s.attributes or {}).items()
        },
    }


class Switch(SpanProcessor):
    def __init__(self) -> None:
        self.targets: list[SpanProcessor] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for t in self.targets:
            t.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for t in self.targets:
            t.on_end(span)

    def _on_ending(self, span: Span) -> None:
        # The SDK's hook between a span's end and every on_end, where the
        # stamping processor puts a dropped identity back.
        for t in self.targets:
            hook = getattr(t, "_on_ending", None)
            if hook is not None:
                hook(span)


def main(argv: list[str]) -> None:
    scenario, out = argv[:2]
    config = Config.load(env={}, extra=()).with_values(shutdown_timeout_s=2.0, model_context_windows={"gpt-4o": WINDOW})
    # The price table, read once before any pipeline (as the suite's session
    # fixture does): otherwise the first run pays its child process inside
    # its flush deadline, and on a loaded machine its calls go unpriced.
    pricetable.build(None)
    switch = Switch()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}), shutdown_on_exit=False)
    provider.add_span_processor(switch)
    trace.set_tracer_provider(provider)
    module = importlib.import_module(scenario)
    for arg in argv[2:]:
        run, _, url = arg.partition("=")
        path, case = run.split(":")
        spans = InMemorySpanExporter()
        memory = InMemorySink()
        console = io.StringIO()
        sinks: list[Any] = [memory, ConsoleSink(stream=console, interval_s=3600)]
        owner: SpanvisorSpanProcessor | SpanvisorSpanExporter | None = None
        agent: SpanvisorSpanProcessor | None = None
        if path == "processor":
            owner = SpanvisorSpanProcessor(sinks=sinks, config=config)
            target: SpanProcessor = owner
        elif path == "exporter":
            owner = SpanvisorSpanExporter(sinks=sinks, config=config)
            target = SimpleSpanProcessor(owner)
        elif path == "serve":
            target = SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=20))
        elif path == "stamped":
            # As an agent adds them: spanvisor's processor (stamping its
            # tasks' spans), then the OTLP exporter to the receiver.
            agent = SpanvisorSpanProcessor(sinks=[InMemorySink()], config=config)
            target = SynchronousMultiSpanProcessor()
            target.add_span_processor(agent)
            target.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=20)))
        else:
            raise SystemExit(f"unknown path {path!r}")
        switch.targets = [target, SimpleSpanProcessor(spans)]
        if path == "processor" and case == "ok":
            _live.arm(memory.events)  # what the run's first tool call sees of it, mid-run
        try:
            result = {"output": str(module.CASES[case](provider))}
        except Exception as exc:
            result = {"error_type": type(exc).__name__, "error_message": str(exc)}
        finally:
            _live.disarm()
        provider.force_flush()
        switch.targets = []
        if agent is not None:
            assert agent.force_flush(10_000), "the agent's spanvisor did not flush"
            agent.pipeline.shutdown(2.0)
        events = []
        if owner is not None:
            assert owner.force_flush(10_000), "spanvisor did not flush"
            events = list(memory.events)
            owner.pipeline.shutdown(2.0)
        base = Path(out, f"{path}-{case}")
        base.with_suffix(".result.json").write_text(json.dumps(result))
        base.with_suffix(".live.json").write_text(
            json.dumps(_live.seen[:1] if path == "processor" and case == "ok" else [])
        )
        base.with_suffix(".events.jsonl").write_text("".join(json.dumps(event_to_dict(e)) + "\n" for e in events))
        base.with_suffix(".console.txt").write_text(console.getvalue())
        spans_text = "".join(json.dumps(_span(s)) + "\n" for s in spans.get_finished_spans())
        base.with_suffix(".spans.jsonl").write_text(spans_text)


if __name__ == "__main__":
    main(sys.argv[1:])
