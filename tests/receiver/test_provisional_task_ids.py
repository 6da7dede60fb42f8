"""Behind a Collector (a real receiver, the OTel SDK's OTLP/HTTP exporters):
a task of the helper whose model and tool calls leave before its live start
record is shown under its ``agent.task.id`` from its first event, never
under ``<trace>-<span>`` (the helper's approvals and cancels are addressed to
that id). The property over arrival orders is
``tests/core/test_provisional_task_ids.py``'s."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from tests.waiting import wait_until

from conftest import close_live_channels
from spanvisor.agent import task
from spanvisor.events import TaskFinished, TaskStarted
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink


def test_a_helper_task_whose_calls_leave_first_is_shown_under_its_own_id(
    receiver: Any, pipeline: Pipeline, sink: InMemorySink
) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "fixer-pod"}), shutdown_on_exit=False)
    # Spans leave every 10 ms: well before the log exporter's first batch of live records.
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.http_url), schedule_delay_millis=10)
    )
    tracer = provider.get_tracer("agent")
    try:
        with task("Fix the build", agent_id="fixer", task_id="fix-42", tracer=tracer):
            for _ in range(2):
                with tracer.start_as_current_span("execute_tool run") as s:
                    s.set_attributes({cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "run"})
                with tracer.start_as_current_span("chat gpt-4o") as s:
                    s.set_attributes({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"})
            # Shown while its root is open.
            wait_until(lambda: sink.of_type(TaskStarted), timeout=30, what="the task shown while it runs")
            assert not sink.of_type(TaskFinished)
            time.sleep(0.1)
        provider.force_flush(30_000)
        wait_until(lambda: sink.of_type(TaskFinished), timeout=30, what="the task finished")
    finally:
        provider.shutdown()
        close_live_channels()  # the helper's channel and its log exporter end with the test
    assert {e.task_id for e in sink.events} == {"fix-42"}
    assert pipeline.stats.value("provisional_tasks_total", outcome="shown") == 0
