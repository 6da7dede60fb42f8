"""A processor or exporter made after the default pipeline was shut down gets
a live pipeline; one given a pipeline that was shut down is a clear error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.otel import attach
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

from ._sdk import _config


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPANVISOR_SINKS", "console")
    monkeypatch.setattr(attach, "_default", None)
    yield
    if attach._default is not None:
        attach._default.shutdown(2.0)


def _one_task(processor: SpanvisorSpanProcessor) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("run", attributes={cv.TASK_NAME: "after", cv.AGENT_ID: "rivet"}):
        with tracer.start_as_current_span("step"):
            pass


def test_a_processor_made_after_the_default_pipeline_shut_down_tracks_its_spans(fresh_default: None) -> None:
    first = SpanvisorSpanProcessor()
    first.shutdown()
    assert first.pipeline.closed
    second = SpanvisorSpanProcessor()
    assert second.pipeline is not first.pipeline and not second.pipeline.closed
    _one_task(second)
    assert second.force_flush(10_000)
    assert second.pipeline.stats.value("spans_in_tasks_total") == 2
    # The next owner shares the new default, as before.
    assert SpanvisorSpanExporter().pipeline is second.pipeline


def test_a_pipeline_given_after_its_shutdown_is_a_clear_error() -> None:
    pipeline = Pipeline(_config(), [InMemorySink()], path="processor").start()
    pipeline.shutdown(2.0)
    with pytest.raises(ValueError, match="shut down"):
        SpanvisorSpanProcessor(pipeline=pipeline)
    with pytest.raises(ValueError, match="shut down"):
        SpanvisorSpanExporter(pipeline=pipeline)
