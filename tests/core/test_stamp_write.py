"""The processor writes its stamp straight into a new span's attributes: the
result must be what the SDK's own ``set_attributes`` gives, the agent's own
values win, and the span's attribute limits still hold (then the SDK's call
is used)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanvisor.config import Config
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

ROOT_ATTRS = {"gen_ai.operation.name": "invoke_agent", "agent.id": "rivet", "agent.task.id": "T-1"}


def _run(limits: SpanLimits | None = None, *, after: bool = False) -> dict[str, dict[str, object]]:
    """``after``: spanvisor's processor added after the exporter's (it then
    writes under the attributes' lock: the other saw the span first)."""
    provider = TracerProvider(span_limits=limits or SpanLimits(), shutdown_on_exit=False)
    exported = InMemorySpanExporter()
    proc = SpanvisorSpanProcessor(sinks=[InMemorySink()], config=Config.load(env={}, extra=()))
    if not after:
        provider.add_span_processor(proc)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    if after:
        provider.add_span_processor(proc)
    tracer = provider.get_tracer("t")
    try:
        with tracer.start_as_current_span("invoke_agent rivet", attributes=ROOT_ATTRS):
            with tracer.start_as_current_span("tool", attributes={"k": 1, "agent.id": "own"}):
                pass
            with tracer.start_as_current_span("plain"):
                pass
    finally:
        provider.shutdown()
    return {s.name: dict(s.attributes or {}) for s in exported.get_finished_spans()}


@pytest.mark.parametrize("after", [False, True], ids=["spanvisor first", "spanvisor after the exporter"])
def test_the_stamp_is_on_every_span_and_the_agents_own_values_win(after: bool) -> None:
    spans = _run(after=after)
    root_id = spans["invoke_agent rivet"][cv.TASK_ROOT]
    assert isinstance(root_id, str) and len(root_id) == 16
    assert spans["plain"] == {cv.TASK_ROOT: root_id, cv.TASK_ID: "T-1", cv.AGENT_ID: "rivet"}
    # Written by the agent before the stamp: kept, in its place.
    assert spans["tool"] == {"k": 1, "agent.id": "own", cv.TASK_ROOT: root_id, cv.TASK_ID: "T-1"}
    assert list(spans["tool"]) == ["k", "agent.id", cv.TASK_ROOT, cv.TASK_ID]


@pytest.mark.parametrize("after", [False, True], ids=["spanvisor first", "spanvisor after the exporter"])
def test_the_spans_limits_still_hold(after: bool) -> None:
    # Two attributes at most: the SDK drops the oldest to make room, as it
    # would for any write; the stamp's newest keys stay.
    few = _run(SpanLimits(max_span_attributes=2), after=after)
    assert len(few["plain"]) == 2 and cv.AGENT_ID in few["plain"]
    # Three, and the tool's two of its own: the stamp's three would pass it.
    three = _run(SpanLimits(max_span_attributes=3), after=after)
    assert list(three["tool"]) == ["agent.id", cv.TASK_ROOT, cv.TASK_ID] and three["tool"]["agent.id"] == "own"
    # Values cut at 4 characters, as the SDK cuts every value.
    short = _run(SpanLimits(max_attribute_length=4), after=after)
    assert short["plain"][cv.TASK_ID] == "T-1"
    root_id = short["plain"][cv.TASK_ROOT]
    assert isinstance(root_id, str) and len(root_id) == 4
