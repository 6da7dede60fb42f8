"""The processor stamps a task's spans only when they can leave the process
through another exporter: by default (``SPANVISOR_STAMP_SPANS=auto``) when the
TracerProvider runs another span processor as the task's root starts;
``true`` forces it, ``false`` turns it off. Either way the task's events are
the same."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanvisor.config import Config, ConfigError
from spanvisor.events import TaskFinished
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

ROOT_ATTRS = {"gen_ai.operation.name": "invoke_agent", "agent.id": "rivet", "agent.task.id": "T-1"}


class World:
    def __init__(self, other_exporter: bool, **env: str) -> None:
        self.sink = InMemorySink()
        config = Config.load(env=env, extra=()).with_values(shutdown_timeout_s=2.0)
        self.processor = SpanvisorSpanProcessor(sinks=[self.sink], config=config)
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        if other_exporter:
            self.add_exporter()
        self.tracer = self.provider.get_tracer("agent")

    def add_exporter(self) -> None:
        self.provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))

    def task(self, task_id: str) -> list[ReadableSpan]:
        spans = []
        with self.tracer.start_as_current_span(
            "invoke_agent rivet", attributes={**ROOT_ATTRS, cv.TASK_ID: task_id}
        ) as root:
            with self.tracer.start_as_current_span("tool") as tool:
                with self.tracer.start_as_current_span("GET") as http:
                    pass
            spans = [root, tool, http]
        return spans  # type: ignore[return-value]

    def close(self) -> list[TaskFinished]:
        assert self.processor.force_flush(10_000)
        self.processor.pipeline.shutdown(2.0)
        return self.sink.of_type(TaskFinished)


def _stamped(spans: list[ReadableSpan]) -> list[bool]:
    return [cv.TASK_ROOT in (s.attributes or {}) for s in spans]


@pytest.mark.parametrize(
    ("other_exporter", "setting", "expected"),
    [
        (False, "auto", False),
        (True, "auto", True),
        (False, "true", True),
        (True, "false", False),
    ],
)
def test_stamps_follow_the_providers_processors_or_the_setting(
    other_exporter: bool, setting: str, expected: bool
) -> None:
    world = World(other_exporter, SPANVISOR_STAMP_SPANS=setting)
    try:
        spans = world.task("T-1")
    finally:
        finished = world.close()
    assert _stamped(spans) == [expected] * 3
    # Stamped or not, the task is the same to the sinks.
    assert [(f.task_id, f.outcome, f.task.status) for f in finished] == [("T-1", "complete", "complete")]


def test_an_exporter_added_later_stamps_the_tasks_that_start_after_it() -> None:
    world = World(other_exporter=False)
    try:
        before = world.task("T-1")
        world.add_exporter()
        after = world.task("T-2")
    finally:
        finished = world.close()
    assert _stamped(before) == [False] * 3
    assert _stamped(after) == [True] * 3
    assert sorted(f.task_id for f in finished) == ["T-1", "T-2"]


def test_the_setting_is_auto_by_default_and_checked() -> None:
    assert Config.load(env={}, extra=())["stamp_spans"] == "auto"
    assert Config.load(env={"SPANVISOR_STAMP_SPANS": "on"}, extra=())["stamp_spans"] == "on"
    assert Config.load(env={"SPANVISOR_STAMP_SPANS": "False"}, extra=())["stamp_spans"] == "off"
    with pytest.raises(ConfigError):
        Config.load(env={"SPANVISOR_STAMP_SPANS": "sometimes"}, extra=())


def test_a_member_of_an_unstamped_task_keeps_its_own_attributes_past_the_limit() -> None:
    """The stamp goes back into a span that dropped attributes only when the
    span had it: a member of an unstamped task gives none of its own up."""
    from opentelemetry.sdk.trace import SpanLimits

    sink = InMemorySink()
    processor = SpanvisorSpanProcessor(sinks=[sink], config=Config.load(env={}, extra=()))
    provider = TracerProvider(shutdown_on_exit=False, span_limits=SpanLimits(max_span_attributes=5))
    provider.add_span_processor(processor)  # no other processor: auto does not stamp
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("invoke_agent rivet", attributes=ROOT_ATTRS):
        with tracer.start_as_current_span("tool") as member:
            for i in range(7):
                member.set_attribute(f"k{i}", i)
    assert dict(member.attributes or {}) == {f"k{i}": i for i in range(2, 7)}  # the SDK's own drops only
    assert processor.force_flush(10_000)
    processor.pipeline.shutdown(2.0)
