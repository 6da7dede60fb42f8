"""SpanvisorSpanExporter: a standard SpanExporter, for a BatchSpanProcessor.

Registered as ``spanvisor`` in the ``opentelemetry_traces_exporter``
entry-point group, so ``OTEL_TRACES_EXPORTER=otlp,spanvisor
opentelemetry-instrument python agent.py`` works with no code. Spans arrive
only when they end, children before their root; the tracker groups them.
For live progress on this path, set ``SPANVISOR_LIVE=1`` (see
:mod:`spanvisor.autoconfig`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from spanvisor.config import Config
from spanvisor.pipeline import EXIT_FLUSH_S, Pipeline
from spanvisor.sink import Sink

log = logging.getLogger("spanvisor.exporter")


class SpanvisorSpanExporter(SpanExporter):
    def __init__(
        self,
        sinks: Sequence[Sink] | None = None,
        *,
        config: Config | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        if pipeline is None and sinks is None and config is None:
            from spanvisor.autoconfig import default_pipeline

            pipeline = default_pipeline("exporter")
        self.pipeline = pipeline or Pipeline(config, sinks, path="exporter")
        self.pipeline.start()

    @property
    def stats(self) -> object:
        return self.pipeline.stats

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            for span in spans:
                self.pipeline.submit_end(span)
            return SpanExportResult.SUCCESS
        except Exception:
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            return self.pipeline.force_flush(timeout_millis / 1000)
        except Exception:
            return False

    def shutdown(self) -> None:
        try:
            # The agent is exiting: a stalled sink may delay that a little, never long.
            self.pipeline.shutdown(min(EXIT_FLUSH_S, float(self.pipeline.config.get("shutdown_timeout_s", 20.0))))
        except Exception:
            log.exception("spanvisor exporter shutdown failed")
