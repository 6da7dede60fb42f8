"""Behind a Collector (a real receiver, the OTel SDK's OTLP/HTTP exporter), a
plain-OTel agent whose root names its ``agent.task.id`` only on the root
itself: the task shows from its first calls under a derived id, and takes
the root's id when the root arrives in a later request, its views naming the
derived one as ``former_id``. The property over arrival orders is
``tests/core/test_provisional_rename.py``'s."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from tests.waiting import wait_until

from spanvisor.events import TaskFinished, TaskStarted
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink


def test_a_plain_agent_task_shown_before_its_root_takes_the_roots_id(
    receiver: Any, pipeline: Pipeline, sink: InMemorySink
) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "fixer-pod"}), shutdown_on_exit=False)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.http_url), schedule_delay_millis=10)
    )
    tracer = provider.get_tracer("agent")
    try:
        with tracer.start_as_current_span("invoke_agent fixer") as root:
            for _ in range(2):
                with tracer.start_as_current_span("execute_tool run") as s:
                    s.set_attributes({cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "run"})
                with tracer.start_as_current_span("chat gpt-4o") as s:
                    s.set_attributes({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"})
            wait_until(lambda: sink.of_type(TaskStarted), timeout=30, what="the task shown while it runs")
            derived = sink.of_type(TaskStarted)[0].task_id
            # Only the root says which task this is, and it leaves last.
            root.set_attributes({cv.TASK_ID: "fix-42", cv.TASK_NAME: "Fix the build", cv.AGENT_ID: "fixer"})
        provider.force_flush(30_000)
        wait_until(lambda: sink.of_type(TaskFinished), timeout=30, what="the task finished")
    finally:
        provider.shutdown()
    assert derived != "fix-42"
    first = next(i for i, e in enumerate(sink.events) if e.task_id == "fix-42")
    assert {e.task_id for e in sink.events[:first]} == {derived}
    assert all(e.task_id == "fix-42" and e.task.former_id == derived for e in sink.events[first:])
    done = sink.of_type(TaskFinished)
    assert len(done) == 1 and done[0].task.task_name == "Fix the build"
    assert pipeline.stats.value("provisional_tasks_total", outcome="renamed") == 1
    open_states, closed = pipeline.tracker.states_of(derived)
    assert [s.working.task_id for s in (*open_states, *closed)] == ["fix-42"]
