"""The log processor's hint, on any interleaving of task roots and records.

``SpanvisorLogProcessor`` reads, on the agent's thread, whether a record
belongs to a task (``log_in``'s ``in_task``) from the span processor's
``task_traces`` (the traces of open task roots) and ``_opened``: a record
said to be in none is dropped at once. On random interleavings of task roots
starting and ending in a few traces, their spans, log records emitted in
them, and the pipeline catching up at random points, a record
emitted while its task's root is open is never said to be in no task; one
in a trace that never had a task is; and nothing is left once every root
ended and the pipeline caught up.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, LogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.otel.logs import SpanvisorLogProcessor, log_in
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

from ._sdk import _config

TRACES = 2
ROOTS = 2  # task roots per trace: one after another or side by side


class _Idle(Pipeline):
    """A pipeline whose thread never starts: it catches up (one pump, on this
    thread) only where the steps say, so every interleaving is the one drawn."""

    def start(self) -> _Idle:
        return self


class _Hint(LogRecordProcessor):
    """What the log processor would say of each record, as it is emitted."""

    def __init__(self, spanvisor: SpanvisorLogProcessor) -> None:
        self.spanvisor = spanvisor
        self.said: list[bool | None] = []

    def on_emit(self, log_record: Any) -> None:
        self.said.append(log_in(log_record, self.spanvisor._spans, self.spanvisor._traces).in_task)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


_STEP = st.one_of(
    st.tuples(st.just("root"), st.integers(0, TRACES - 1), st.integers(0, ROOTS - 1)),
    st.tuples(st.just("end"), st.integers(0, TRACES - 1), st.integers(0, ROOTS - 1)),
    st.tuples(st.just("log"), st.integers(0, TRACES - 1), st.integers(0, ROOTS - 1)),
    st.tuples(st.just("catch up"), st.just(0), st.just(0)),
)


@pytest.mark.parametrize("stamp", ["auto", "on"], ids=["as they are", "the hooks classify"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_STEP, max_size=30))
# Two tasks side by side in one trace, the first ending first.
@example(steps=[("root", 0, 0), ("root", 0, 1), ("end", 0, 0), ("catch up", 0, 0), ("log", 0, 1)])
def test_a_record_of_an_open_task_is_never_said_to_be_in_none(stamp: str, steps: list[tuple[str, int, int]]) -> None:
    """Spans handed over as they are (the default), and classified by the
    hooks (stamping): there the first root left its trace's hint behind."""
    pipeline = _Idle(_config().with_values(stamp_spans=stamp), [InMemorySink()])
    processor = SpanvisorSpanProcessor(pipeline=pipeline)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    spanvisor = SpanvisorLogProcessor(processor)
    hint = _Hint(spanvisor)
    logs = LoggerProvider(shutdown_on_exit=False)
    logs.add_log_record_processor(hint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.NOTSET, logger_provider=logs)
    logger = logging.getLogger(f"agent.hint.{id(pipeline)}")
    logger.propagate = False
    logger.addHandler(handler)
    # Each trace: a plain span (no task) under which its task roots start.
    bases = [tracer.start_span(f"trace {t}") for t in range(TRACES)]
    roots: dict[tuple[int, int], Any] = {}
    ever: set[int] = set()
    try:
        for kind, t, r in steps:
            if kind == "root" and (t, r) not in roots:
                ctx = trace.set_span_in_context(bases[t])
                roots[(t, r)] = tracer.start_span(f"task {t}.{r}", context=ctx, attributes={cv.TASK_NAME: f"{t}.{r}"})
                ever.add(t)
            elif kind == "end" and (t, r) in roots:
                roots.pop((t, r)).end()
            elif kind == "log":
                root = roots.get((t, r))
                # In a child of the open root, or (none open) in the trace's plain span.
                ctx = trace.set_span_in_context(root if root is not None else bases[t])
                with tracer.start_as_current_span("step", context=ctx):
                    logger.warning("step %s.%s", t, r)
                said = hint.said[-1]
                if root is not None:
                    assert said is not False, (t, r, steps)
                elif t not in ever:
                    assert said is False, (t, r, steps)
            elif kind == "catch up":
                pipeline._pump()
        for root in roots.values():
            root.end()
        pipeline._pump()
        assert processor.task_traces == {}
    finally:
        logger.removeHandler(handler)
        logs.shutdown()


def test_a_hinted_root_whose_start_was_refused_takes_its_hint_with_it() -> None:
    """A possible root whose start a full inbox refused is hinted by the
    hooks (its records are kept for the task its end may still make) but
    never a task root in the pipeline's classification: its end takes the
    hint back (handed over, or refused too), or it stayed until 10,000 other
    traces pushed it out."""
    for end_refused in (False, True):
        pipeline = _Idle(_config().with_values(inbox_size=4), [InMemorySink()])
        processor = SpanvisorSpanProcessor(pipeline=pipeline)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("agent")
        filler = [tracer.start_span(f"plain {i}") for i in range(4)]  # the inbox full
        root = tracer.start_span("task", attributes={cv.TASK_NAME: "t"})  # refused
        assert root.get_span_context().trace_id in processor.task_traces  # hinted all the same
        if not end_refused:
            pipeline._pump()
        root.end()
        for span in filler:
            span.end()
        pipeline._pump()
        assert processor.task_traces == {} and processor._trace_roots == {}, end_refused
