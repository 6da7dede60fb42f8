"""In-process late spans and the processor's own errors are counted.

Work that outlives its task's root, on a real TracerProvider: a span that
ends after the root ended, one that starts under the ended root, and one that
starts under a still-open child of it. Each is counted once in
``late_spans_total``; one that changes the task's totals (a model call)
becomes a TaskCorrected after TaskFinished, as on the end-order paths. Exceptions caught in
the hooks are counted in ``processor_errors_total`` and reach Prometheus.
"""

from __future__ import annotations

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from spanvisor.events import TaskCorrected, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor_prometheus import PrometheusSink

from ._sdk import Agent, _config


def _late(a: Agent) -> float:
    return a.processor.stats.value("late_spans_total")


def test_a_child_ending_after_its_root_is_late(agent: Agent, memory: InMemorySink) -> None:
    root = agent.tracer.start_span("task", attributes={cv.TASK_NAME: "t"})
    child = agent.tracer.start_span("background upload", context=trace.set_span_in_context(root))
    root.end()
    assert agent.flush()
    child.set_attribute(cv.PROGRESS, 90)  # too late to change the finished task
    child.end()
    assert agent.flush()
    assert _late(agent) == 1
    assert [e.kind for e in memory.events] == ["TaskStarted", "TaskFinished"]


def test_spans_starting_after_the_root_ended_are_late_once_each(agent: Agent, memory: InMemorySink) -> None:
    root = agent.tracer.start_span("task", attributes={cv.TASK_NAME: "t"})
    root_ctx = trace.set_span_in_context(root)
    child = agent.tracer.start_span("poller", context=root_ctx)
    root.end()
    # Under the ended root itself (a context captured before it ended)...
    after = agent.tracer.start_span("fire and forget", context=root_ctx)
    # ...with a child of its own, and under the still-open child.
    agent.tracer.start_span("nested", context=trace.set_span_in_context(after)).end()
    grandchild = agent.tracer.start_span(
        "chat", context=trace.set_span_in_context(child), attributes={cv.GEN_AI_OPERATION: "chat"}
    )
    grandchild.set_attributes({cv.GEN_AI_INPUT: 500, cv.GEN_AI_OUTPUT: 5})
    grandchild.end()
    after.end()
    child.end()
    assert agent.flush()
    # nested, chat, fire and forget, and the poller that outlived the root.
    assert _late(agent) == 4
    # The late model call corrects the finished task's totals (the late-span rule).
    assert [e.kind for e in memory.events] == ["TaskStarted", "TaskFinished", "TaskCorrected"]
    assert memory.of_type(TaskFinished)[0].task.input_tokens == 0
    corrected = memory.of_type(TaskCorrected)[0]
    assert (corrected.task.input_tokens, corrected.added_input_tokens, corrected.task.status) == (500, 500, "complete")
    # Still stamped: exported elsewhere, they belong to their task.
    task_id = memory.events[0].task.task_id
    stamped = {s.name: (s.attributes or {}).get(cv.TASK_ID) for s in agent.exported.get_finished_spans()}
    assert stamped["fire and forget"] == stamped["nested"] == stamped["chat"] == task_id


def test_late_work_is_its_tasks_without_stamps_too(memory: InMemorySink) -> None:
    """Stamping off: a call started after the root ended, under a child still
    running, is known as the task's all the same (the processor knows) and
    corrects its totals, as one that started before the root ended does."""
    agent = Agent([memory], _config(SPANVISOR_STAMP_SPANS="false"))
    try:
        root = agent.tracer.start_span("task", attributes={cv.TASK_NAME: "t"})
        child = agent.tracer.start_span("worker", context=trace.set_span_in_context(root))
        before = agent.tracer.start_span("chat", context=trace.set_span_in_context(child))
        root.end()
        after = agent.tracer.start_span("chat", context=trace.set_span_in_context(child))
        for span, n in ((before, 300), (after, 700)):
            span.set_attributes({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: n, cv.GEN_AI_OUTPUT: 1})
            span.end()
        child.end()
        assert agent.flush()
        assert not any(cv.TASK_ID in (s.attributes or {}) for s in agent.exported.get_finished_spans())
        assert [e.kind for e in memory.events] == ["TaskStarted", "TaskFinished", "TaskCorrected", "TaskCorrected"]
        assert [e.task.input_tokens for e in memory.of_type(TaskCorrected)] == [300, 1000]
        assert _late(agent) == 3
    finally:
        agent.close()


def test_unrelated_spans_and_later_tasks_are_not_late(agent: Agent, memory: InMemorySink) -> None:
    with agent.tracer.start_as_current_span("first", attributes={cv.TASK_NAME: "first"}):
        pass
    with agent.tracer.start_as_current_span("GET /healthz"):
        agent.tracer.start_span("db query").end()
    with agent.tracer.start_as_current_span("second", attributes={cv.TASK_NAME: "second"}):
        with agent.tracer.start_as_current_span("tool"):
            pass
    assert agent.flush()
    assert _late(agent) == 0
    assert len(memory.of_type(TaskFinished)) == 2


def test_hook_errors_are_counted_and_exposed() -> None:
    registry = CollectorRegistry()
    a = Agent([PrometheusSink(registry=registry)])
    try:
        # Not a span at all: the hooks catch what it raises.
        a.processor.on_start(object())  # type: ignore[arg-type]
        a.processor.on_end(object())  # type: ignore[arg-type]
        with a.tracer.start_as_current_span("t", attributes={cv.TASK_NAME: "t"}):
            pass  # and the processor still works
        assert a.flush()
        assert a.processor.stats.value("processor_errors_total") == 2
        assert registry.get_sample_value("spanvisor_processor_errors_total") == 2
    finally:
        a.close()
