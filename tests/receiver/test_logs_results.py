"""Result fields through `spanvisor serve`: agent.result.* on a task root,
sent by the real OTLP/HTTP and gRPC span exporters, in TaskView.results (the
decoder keeps agent.result.* keys besides the keys the tracker reads)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tests.waiting import wait_until

from conftest import RunningReceiver
from spanvisor.events import ResultField, TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

R = cv.RESULT_PREFIX


def _complete_a_task(exporter: Any) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span(
        "forecast", attributes={cv.TASK_NAME: "forecast", cv.AGENT_ID: "rivet", R + "arr_gain": 4820}
    ) as root:
        with tracer.start_as_current_span("tool", attributes={"http.method": "GET", R + "ignored": "child"}):
            pass
        root.set_attribute(R + "arr_gain.unit", "USD")
        root.set_attribute(R + "precision", 0.94)
        root.set_attribute(R + "merged", True)
        root.set_attribute(R + "verdict", "ship it")
        root.set_attribute("gen_ai.prompt.0.content", "not kept")
    provider.shutdown()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_results_from_a_root_reach_taskview(
    transport: str, receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    if transport == "http":
        exporter: Any = HttpSpanExporter(endpoint=receiver.http_url)
    else:
        exporter = GrpcSpanExporter(endpoint=receiver.grpc_target, insecure=True)
    _complete_a_task(exporter)
    assert pipeline.force_flush(10)
    [done] = wait_until(lambda: sink.of_type(TaskFinished), what="the task's end")
    assert done.outcome == "complete"
    assert done.task.results == (
        ResultField("arr_gain", 4820, "USD"),
        ResultField("precision", 0.94, None),
        ResultField("merged", True, None),
        ResultField("verdict", "ship it", None),
    )
