"""What tells a bare start from a bare end on the pipeline's thread.

``on_end`` is the inbox's bare append, so the item's type is all there is:
a live ``Span`` (or a ``StartedRoot``) is a start, a ``ReadableSpan`` that is
no ``Span`` an end, the SDK's own class or a subclass of it (a wrapping
processor's, say). That the SDK hands ``on_end`` a ``ReadableSpan`` of the
exact class, never the live span, is pinned in
``test_processor_bare_handover.py``."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv

from ._sdk import _config


class _Idle(Pipeline):
    def start(self) -> _Idle:
        return self


class _Copied(ReadableSpan):
    """A ReadableSpan of another class, as a wrapping processor may hand on."""


def _copy(span: ReadableSpan) -> _Copied:
    return _Copied(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _events(end_as: Any) -> list[str]:
    """A task (a root and two tool calls) handed to the processor's hooks
    by hand, each end as ``end_as`` makes it; the kinds of its events."""
    pipeline = _Idle(_config(), [])
    seen: list[str] = []
    pipeline._dispatch = lambda events, tails=True: seen.extend(e.kind for e in events)  # type: ignore[method-assign]
    processor = SpanvisorSpanProcessor(pipeline=pipeline)
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("agent")  # no processor of its own
    with tracer.start_as_current_span("task", attributes={cv.TASK_NAME: "t", cv.AGENT_ID: "a"}) as root:
        processor.on_start(root)
        for _ in range(2):
            with tracer.start_as_current_span("tool", attributes={cv.GEN_AI_OPERATION: "execute_tool"}) as tool:
                processor.on_start(tool)
            processor.on_end(end_as(tool))
    processor.on_end(end_as(root))
    assert type(pipeline._inbox._items[-1]) is not tuple  # handed over bare
    pipeline._pump()
    assert processor._errors == 0
    return seen


def test_an_end_of_a_readable_span_subclass_is_an_end() -> None:
    plain = _events(lambda span: span._readable_span())
    assert "TaskFinished" in plain
    assert _events(_copy) == plain
