"""Spans handed over bare: what the hooks append, and what tells it apart.

By default the processor appends each span to the inbox as it is, no tuple:
the SDK's ``Span`` at its start (a possible task root as a ``StartedRoot``),
the ``ReadableSpan`` the SDK hands ``on_end`` at its end. The inbox turns
them back into entries with the processor's ``replay``; a second processor
on the same pipeline tags its own.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from spanvisor.events import TaskFinished
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.handover import StartedRoot
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

from ._sdk import _config


class _Seen(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[Any] = []
        self.ended: list[Any] = []

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.started.append(span)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def test_the_sdk_hands_on_start_its_span_and_on_end_a_readable_span() -> None:
    """What tells a bare start from a bare end in the inbox: an SDK that
    handed ``on_end`` the span itself would make every end a start."""
    seen = _Seen()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(seen)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    assert type(seen.ended[0]) is ReadableSpan
    assert type(seen.started[0]) is not ReadableSpan and isinstance(seen.started[0], Span)
    assert seen.ended[0].context is seen.started[0].context


def test_two_processors_on_one_pipeline_both_have_their_tasks() -> None:
    memory = InMemorySink()
    pipeline = Pipeline(_config(), [memory])
    first, second = SpanvisorSpanProcessor(pipeline=pipeline), SpanvisorSpanProcessor(pipeline=pipeline)
    assert pipeline._inbox.replay == first._replay
    try:
        for n, proc in enumerate((first, second)):
            provider = TracerProvider(shutdown_on_exit=False)
            provider.add_span_processor(proc)
            tracer = provider.get_tracer("agent")
            with tracer.start_as_current_span("task", attributes={cv.TASK_NAME: f"t{n}", cv.AGENT_ID: "a"}):
                with tracer.start_as_current_span("tool"):
                    pass
        assert pipeline.force_flush(10)
    finally:
        pipeline.shutdown(2.0)
    finished = sorted(e.task.task_name for e in memory.events if isinstance(e, TaskFinished))
    assert finished == ["t0", "t1"]
    assert first._errors == 0


class _Idle(Pipeline):
    """A pipeline whose thread never starts: the hook's item stays in the inbox."""

    def start(self) -> _Idle:
        return self


_OPS = ["chat", "invoke_agent", "invoke_workflow", "create_agent", "execute_tool", "x", ""]
_LANGGRAPH = ['{"ls_integration": "langgraph"}', '{"ls_integration": "langgraph", "langgraph_node": 1}', "{}"]
# Every key the root test reads, each absent or with values that do and do not matter.
_ATTRS = st.fixed_dictionaries(
    {},
    optional={
        cv.TASK_NAME: st.sampled_from(["t", ""]),
        cv.TASK_ID: st.sampled_from(["id", ""]),
        cv.GEN_AI_OPERATION: st.sampled_from(_OPS),
        cv.OI_KIND: st.sampled_from(["AGENT", "CHAIN", "LLM", "TOOL"]),
        cv.TL_KIND: st.sampled_from(["agent", "task", "workflow"]),
        cv.OI_METADATA: st.sampled_from(_LANGGRAPH),
        cv.AGENT_ID: st.just("a"),
        "tool.x": st.just("y"),
    },
)


@settings(max_examples=200, deadline=None)
@given(attrs=_ATTRS)
def test_on_start_copies_exactly_the_spans_that_may_be_task_roots(attrs: dict[str, str]) -> None:
    """The hook's inlined test (a few lookups for the usual span) says what
    ``conventions.is_root_candidate`` says, on any mix of the keys it reads."""
    pipeline = _Idle(_config(SPANVISOR_INBOX_SIZE="100"), [])
    processor = SpanvisorSpanProcessor(pipeline=pipeline)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    span = provider.get_tracer("t").start_span("s", attributes=attrs)
    item = pipeline._inbox._items[0]
    assert (type(item) is StartedRoot) is cv.is_root_candidate(attrs), item
    span.end()
