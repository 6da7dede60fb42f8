"""SpanvisorSpanProcessor and SpanvisorSpanExporter on a real TracerProvider.

No timers are measured: a stalled sink must simply not keep ``span.end()``,
``force_flush`` or ``shutdown`` from returning.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from spanvisor.events import ArtifactAdded, Checkpoint, Event, TaskFinished, TaskStarted
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import BaseSink, SinkResult
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

from ._invariants import check_stream
from ._sdk import Agent, _config


def _kinds(events: Sequence[Event]) -> list[str]:
    return [e.kind for e in events]


def test_lifecycle(agent: Agent, memory: InMemorySink) -> None:
    with agent.tracer.start_as_current_span(
        "Diagnose F47", attributes={cv.TASK_NAME: "Diagnose F47", cv.AGENT_ID: "rivet", cv.REPO: "plant/ops"}
    ) as root:
        root.add_event(cv.EVENT_CHECKPOINT, {"message": "Routed to siemens SME", cv.PROGRESS: 30})
        with agent.tracer.start_as_current_span("chat", attributes={cv.GEN_AI_OPERATION: "chat"}) as call:
            call.set_attributes(
                {cv.GEN_AI_REQUEST_MODEL: "claude-sonnet-4", cv.GEN_AI_INPUT: 1200, cv.GEN_AI_OUTPUT: 80}
            )
        with agent.tracer.start_as_current_span("write") as tool:
            tool.add_event(cv.EVENT_ARTIFACT, {cv.ARTIFACT_NAME: "report.md", cv.ARTIFACT_URI: "s3://r/report.md"})
        with agent.tracer.start_as_current_span("step", attributes={cv.STEP: "report"}):
            pass
    assert agent.flush()
    events = memory.events
    check_stream(events)
    assert isinstance(events[0], TaskStarted) and isinstance(events[-1], TaskFinished)
    assert events[0].task.task_name == "Diagnose F47" and events[0].task.agent_id == "rivet"
    cps = memory.of_type(Checkpoint)
    assert {c.source for c in cps} >= {"event", "model_call"}
    assert [a.artifact.name for a in memory.of_type(ArtifactAdded)] == ["report.md"]
    done = events[-1]
    assert done.outcome == "complete" and done.task.progress == 30 and done.task.step == "report"
    assert (done.task.input_tokens, done.task.output_tokens, done.task.repo) == (1200, 80, "plant/ops")


def test_error_outcome(agent: Agent, memory: InMemorySink) -> None:
    with pytest.raises(ValueError):
        with agent.tracer.start_as_current_span("t", attributes={cv.TASK_NAME: "flaky", cv.REPO: "plant/ops"}):
            raise ValueError("gasket pressure out of range")
    assert agent.flush()
    done = memory.of_type(TaskFinished)[0]
    assert done.outcome == "error"
    assert done.error_type == "ValueError" and done.error_message == "gasket pressure out of range"
    assert done.stacktrace and "ValueError" in done.stacktrace


def test_error_type_survives_on_a_root_with_only_stamp_keys(agent: Agent, memory: InMemorySink) -> None:
    """``with task("flaky"):`` raising: the root carries only agent.task.name
    and the stamps, so ``_light`` copies no events, and the ``exception``
    event (type, message, stack trace) never reaches the tracker: the task
    ends with error_type None and the status description as the message."""
    with pytest.raises(ValueError):
        with agent.tracer.start_as_current_span("t", attributes={cv.TASK_NAME: "flaky"}):
            raise ValueError("gasket pressure out of range")
    assert agent.flush()
    done = memory.of_type(TaskFinished)[0]
    assert done.outcome == "error"
    assert done.error_type == "ValueError" and done.error_message == "gasket pressure out of range"
    assert done.stacktrace and "ValueError" in done.stacktrace


def test_live_progress_arrives_while_the_root_is_open(agent: Agent, memory: InMemorySink) -> None:
    root = agent.tracer.start_span("long task", attributes={cv.TASK_NAME: "long task"})
    try:
        assert agent.flush()
        assert _kinds(memory.events)[0] == "TaskStarted"
        assert not [c for c in memory.of_type(Checkpoint) if "progress" in c.changed]
        root.set_attribute(cv.PROGRESS, 40)
        assert agent.flush()
        live = [c for c in memory.of_type(Checkpoint) if "progress" in c.changed]
        assert [c.task.progress for c in live] == [40]
        root.add_event(cv.EVENT_CHECKPOINT, {"message": "half way", cv.STEP: "validate"})
        assert agent.flush()
        cp = memory.of_type(Checkpoint)[-1]
        assert (cp.source, cp.task.message, cp.task.step) == ("event", "half way", "validate")
        assert not memory.of_type(TaskFinished)
    finally:
        root.end()
    assert agent.flush()
    assert _kinds(memory.events)[-1] == "TaskFinished"


def test_descendants_are_stamped(agent: Agent) -> None:
    with agent.tracer.start_as_current_span(
        "invoke_agent researcher", attributes={cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_ID: "res-1"}
    ) as root:
        with agent.tracer.start_as_current_span("tool"):
            with agent.tracer.start_as_current_span("GET /search"):
                pass
    root_hex = format(root.get_span_context().span_id, "016x")
    trace_hex = format(root.get_span_context().trace_id, "032x")
    spans = {s.name: s for s in agent.exported.get_finished_spans()}
    for name in ("tool", "GET /search", "invoke_agent researcher"):
        attrs = spans[name].attributes or {}
        assert attrs[cv.TASK_ROOT] == root_hex, name
        assert attrs[cv.TASK_ID] == f"{trace_hex}-{root_hex}", name
        assert attrs[cv.AGENT_ID] == "res-1", name


def test_unrelated_spans_are_not_stamped(agent: Agent) -> None:
    with agent.tracer.start_as_current_span("GET /healthz"):
        pass
    (span,) = agent.exported.get_finished_spans()
    assert not set(span.attributes or {}) & {cv.TASK_ROOT, cv.TASK_ID, cv.AGENT_ID}


class RaisingSink(BaseSink):
    name = "raising"

    async def export(self, events: Sequence[Event]) -> SinkResult:
        raise RuntimeError("sink bug")


class StalledSink(BaseSink):
    """An export that never returns: a hung HTTP call without a timeout."""

    name = "stalled"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def export(self, events: Sequence[Event]) -> SinkResult:
        self.calls += 1
        await asyncio.Event().wait()
        return SinkResult.SUCCESS

    async def force_flush(self, timeout_s: float) -> bool:
        await asyncio.Event().wait()
        return True

    async def shutdown(self, timeout_s: float) -> None:
        await asyncio.Event().wait()


def _run_task(a: Agent, n_children: int = 3) -> None:
    with a.tracer.start_as_current_span("t", attributes={cv.TASK_NAME: "t"}) as root:
        for i in range(n_children):
            with a.tracer.start_as_current_span(f"c{i}") as c:
                c.set_attribute(cv.PROGRESS, i * 10)
        root.add_event(cv.EVENT_CHECKPOINT, {"message": "done"})


@pytest.mark.slow
def test_a_raising_sink_never_reaches_the_agent(memory: InMemorySink, caplog: pytest.LogCaptureFixture) -> None:
    a = Agent([RaisingSink(), memory])
    try:
        _run_task(a)  # span.end() returns; nothing raised

        # The other sink still gets everything, and the raising one is retried
        # (each sink's worker runs on its own, so wait for both).
        def retried() -> bool:
            return a.processor.stats.value("sink_deliveries_total", sink="raising", outcome="retry") >= 1

        for _ in range(50):
            a.flush(0.5)
            if memory.of_type(TaskFinished) and retried():
                break
        assert memory.of_type(TaskFinished)
        assert retried()
    finally:
        a.close(1.0)


@pytest.mark.slow
def test_a_stalled_sink_blocks_neither_span_end_nor_flush_nor_shutdown(memory: InMemorySink) -> None:
    stalled = StalledSink()
    a = Agent([stalled, memory])
    _run_task(a, n_children=20)
    # force_flush honours its deadline and says the stalled sink is behind...
    assert a.flush(1.0) is False
    # ...while the healthy sink gets everything: a slow sink stalls no other.
    # (Each sink has its own worker: on a loaded machine either may not have
    # had its turn within that second.)
    wait_until(lambda: memory.of_type(TaskFinished), 30, "the healthy sink's events")
    wait_until(lambda: stalled.calls == 1, 30, "the stalled sink's first call")
    _run_task(a)  # still never blocks the agent
    a.close(1.0)  # returns despite export, force_flush and shutdown hanging
    thread = a.processor.pipeline._thread
    assert thread is not None
    thread.join(10)  # it ends too, if not within the very second close gave it
    assert not thread.is_alive()


def test_hooks_swallow_their_own_errors(agent: Agent) -> None:
    agent.processor.on_start(object())  # type: ignore[arg-type]
    agent.processor.on_end(object())  # type: ignore[arg-type]
    # Handed over as they are by default: what tells their task runs on
    # the pipeline's thread, and counts its errors the same way.
    agent.flush()
    assert agent.processor._errors == 2


def test_inbox_drops_are_counted_and_logged_once(memory: InMemorySink, caplog: pytest.LogCaptureFixture) -> None:
    a = Agent([memory], _config(SPANVISOR_INBOX_SIZE="1"))
    try:
        with caplog.at_level(logging.ERROR, logger="spanvisor.pipeline"):
            for _ in range(5):
                _run_task(a, n_children=400)
            a.flush(5.0)
            a.flush(5.0)
        dropped = a.processor.stats.value("dropped_total", reason="inbox_full", sink="")
        assert dropped > 0
        logged = [r for r in caplog.records if "inbox full" in r.getMessage()]
        assert len(logged) == 1
    finally:
        a.close()


def test_no_instrumentation_recursion_from_sink_io(memory: InMemorySink) -> None:
    """A sink's HTTP or database client, instrumented as OTel instrumentations
    are (they check ``is_instrumentation_enabled()``), produces no spans: the
    pipeline thread runs every sink with the suppression flag set."""

    class InstrumentedClientSink(BaseSink):
        name = "instrumented"
        tracer: Any = None
        suppressed: list[bool] = []

        async def export(self, events: Sequence[Event]) -> SinkResult:
            self.suppressed.append(bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY)))
            if is_instrumentation_enabled():
                with self.tracer.start_as_current_span("POST https://slack.com/api/chat.postMessage"):
                    pass
            return SinkResult.SUCCESS

    sink = InstrumentedClientSink()
    a = Agent([sink, memory])
    sink.tracer = a.provider.get_tracer("aiohttp-client")
    try:
        _run_task(a)
        assert a.flush()
        assert sink.suppressed and all(sink.suppressed)
        names = [s.name for s in a.exported.get_finished_spans()]
        assert not [n for n in names if n.startswith("POST https://slack.com")]
        assert len(memory.of_type(TaskStarted)) == 1
    finally:
        a.close()


def test_exporter_behind_a_batch_processor(memory: InMemorySink) -> None:
    exporter = SpanvisorSpanExporter(sinks=[memory], config=_config())
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("agent")
    try:
        with tracer.start_as_current_span("invoke_agent planner", attributes={cv.GEN_AI_OPERATION: "invoke_agent"}):
            with tracer.start_as_current_span("chat", attributes={cv.GEN_AI_OPERATION: "chat"}) as call:
                call.set_attributes({cv.GEN_AI_INPUT: 10, cv.GEN_AI_OUTPUT: 2})
            with tracer.start_as_current_span("fail") as bad:
                bad.set_status(Status(StatusCode.ERROR, "boom"))
        assert provider.force_flush()
        assert exporter.force_flush()
        events = memory.events
        check_stream(events)
        assert _kinds(events)[0] == "TaskStarted" and _kinds(events)[-1] == "TaskFinished"
        assert events[-1].task.task_name == "invoke_agent planner"
        assert events[-1].task.input_tokens == 10
    finally:
        provider.shutdown()
        exporter.pipeline.shutdown(2.0)


def test_alone_the_hooks_hand_spans_over_as_they_are_and_count_a_full_inbox() -> None:
    """No other processor, nothing stamped: each hook is one bounded append
    of the span as it is (the pipeline's thread finds its task), and what a
    full inbox refuses is counted, never raised into the agent. Once the
    inbox has room again, an end goes in unchecked again."""
    pipeline = Pipeline(_config(SPANVISOR_INBOX_SIZE="4"), [InMemorySink()])
    processor = SpanvisorSpanProcessor(pipeline=pipeline)  # starts the pipeline
    # The pipeline's loop held while the hooks run, so nothing drains the
    # inbox meanwhile; released (and the pipeline shut down) at the end.
    held, gate = threading.Event(), threading.Event()
    assert pipeline._loop is not None
    pipeline._loop.call_soon_threadsafe(lambda: (held.set(), gate.wait(30)))
    assert held.wait(10)
    try:
        _fill_a_small_inbox(processor, pipeline)
    finally:
        gate.set()
    # The ends the full inbox refused still close their spans in the
    # pipeline's classification: nothing stays open for good.
    assert pipeline.force_flush(10)
    assert processor._theirs.open == {} and processor.task_traces == {}
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    with provider.get_tracer("agent").start_as_current_span("tool"):
        pass
    assert processor.on_end == processor._append
    pipeline.shutdown(2.0)


def _fill_a_small_inbox(processor: SpanvisorSpanProcessor, pipeline: Pipeline) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("invoke_agent", attributes={cv.AGENT_ID: "a", cv.TASK_NAME: "t"}) as root:
        for _ in range(5):
            with tracer.start_as_current_span("tool"):
                pass
    assert processor._on_ending is id  # nothing to put back: no other processor reads the spans
    # Bare, no tuple: the span as it is (a start: the SDK's Span; an end: the
    # ReadableSpan it hands on_end); the inbox turns them into entries.
    # The end of a span whose start went in goes in unchecked (on_end is the
    # inbox's append itself) until a start is refused; then ends are checked
    # too: the root's start, two tools' starts and ends, then refusals.
    items = list(pipeline._inbox._items)
    assert len(items) == 5 and not any(type(x) is tuple for x in items)
    assert processor.on_end == processor._on_end_checked
    assert items[0].span is root  # the root with its attributes as it started
    assert type(items[1]) is not ReadableSpan and items[1] is not root  # a member's start, as it is
    pipeline.stats.sync_inbox_drops()
    # 12 hook calls (6 spans, start and end), 5 taken.
    assert pipeline.stats.value("dropped_total", reason="inbox_full", sink="") == 7
    assert processor._errors == 0
