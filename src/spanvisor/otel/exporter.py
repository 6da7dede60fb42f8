"""SpanvisorSpanExporter: a standard SpanExporter, for a BatchSpanProcessor.

Registered as ``spanvisor`` in the ``opentelemetry_traces_exporter``
entry-point group, so ``OTEL_TRACES_EXPORTER=otlp,spanvisor
opentelemetry-instrument python agent.py`` works with no code. Spans arrive
only when they end, children before their root; the tracker groups them.
Each ``export()`` call is one delivered batch: provisional tasks (a run whose
root has not arrived) are decided at its end, as the receiver does at a
request's end, so a root in the batch of its children names their task.
For live progress on this path, set ``SPANVISOR_LIVE=1`` (see
:mod:`spanvisor.otel.autoconfig`).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from spanvisor.config import Config
from spanvisor.otel.attach import PipelineOwner
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import Sink


class SpanvisorSpanExporter(PipelineOwner, SpanExporter):
    def __init__(
        self,
        sinks: Sequence[Sink] | None = None,
        *,
        config: Config | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        PipelineOwner.__init__(self, "exporter", sinks, config, pipeline)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            # One delivered batch: its provisional tasks are decided at its end.
            self.pipeline.submit_batch(spans)
            return SpanExportResult.SUCCESS
        except Exception:
            return SpanExportResult.FAILURE
