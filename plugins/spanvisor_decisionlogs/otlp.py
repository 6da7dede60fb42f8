"""The OpenTelemetry side of the decision-log sink: the SDK's ``LoggerProvider``,
``BatchLogRecordProcessor`` and OTLP/HTTP ``OTLPLogExporter``.

Imported lazily (the sink names this module in ``imports``): ``Config.load``
imports every sink class, and a process that never sets the endpoint need
not load the SDK's logs and exporter modules.

A provider of its own, never the global one: an agent's process may have
its own ``LoggerProvider`` (its logs, to its backend); decisions must
neither go there nor take it over.

What the SDK does with a batch, and what is counted: the processor hands
batches to the exporter on its own thread (every :data:`SCHEDULE_DELAY_MS`);
the exporter retries transient failures (connection refused, 429, 502, 503,
504) with backoff within its timeout, then gives up. The wrapper here
reports every batch's end to ``on_result`` (sent, or failed and lost), which
the sink counts; records the processor itself drops (its queue full) never
reach the exporter and show as unsent at shutdown.
"""

from __future__ import annotations

# netrc and requests: what the exporter's HTTP client imports when it is
# built and on its first request, imported with this module so that the
# sink's ``imports`` covers them (docs/design/architecture.md, "Imports").
import netrc  # noqa: F401
import threading
import time
from collections.abc import Callable, Sequence

import requests  # type: ignore[import-untyped]  # noqa: F401
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import Logger, LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, set_span_in_context

from spanvisor import __version__
from spanvisor_decisionlogs.record import DecisionRecord

SCOPE = "spanvisor.decisionlogs"
# How often the batch thread looks for records. Decisions are rare and a
# flush waits for the next look, so shorter than the SDK's 1 s default;
# the look itself is a length check.
SCHEDULE_DELAY_MS = 200

# (records in the batch, sent?): called on the SDK's batch thread.
OnResult = Callable[[int, bool], None]


class CountingExporter(LogRecordExporter):
    """Passes batches to the OTLP exporter and says how each ended. Once
    aborted (shutdown while the endpoint is away) it sends nothing more and
    reports what it is given as failed, instead of waiting out retries."""

    def __init__(self, inner: LogRecordExporter, on_result: OnResult) -> None:
        self._inner = inner
        self._on_result = on_result
        self._aborted = threading.Event()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = LogRecordExportResult.FAILURE
        if not self._aborted.is_set():
            try:
                result = self._inner.export(batch)
            except Exception:  # the processor would log it and lose the batch; it is counted instead
                result = LogRecordExportResult.FAILURE
        try:
            self._on_result(len(batch), result is LogRecordExportResult.SUCCESS)
        except Exception:  # counting must not break the SDK's thread
            pass
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # nothing is held here

    def shutdown(self) -> None:
        """Stops sending: a retry waiting for its backoff ends now."""
        if not self._aborted.is_set():
            self._aborted.set()
            self._inner.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated


class Emitter:
    """Emits decision records into a private provider exporting over OTLP/HTTP."""

    def __init__(self, endpoint: str, headers: dict[str, str], timeout_s: float, on_result: OnResult) -> None:
        self._exporter = CountingExporter(
            OTLPLogExporter(endpoint=endpoint, headers=headers, timeout=timeout_s), on_result
        )
        # OTEL_RESOURCE_ATTRIBUTES (e.g. deployment.environment) apply; the
        # service is spanvisor, whatever OTEL_SERVICE_NAME names (in an
        # agent's process: the agent). Not Resource.create: its detectors
        # load entry points, i.e. import modules, on the pipeline's thread.
        resource = (
            OTELResourceDetector()
            .detect()
            .merge(Resource({"service.name": "spanvisor", "service.version": __version__}))
        )
        # shutdown_on_exit=False: the sink shuts it down, within its own deadline.
        self._provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_log_record_processor(
            BatchLogRecordProcessor(self._exporter, schedule_delay_millis=SCHEDULE_DELAY_MS)
        )
        self._logger = self._provider.get_logger(SCOPE, __version__)

    @property
    def live(self) -> bool:
        """False when OTEL_SDK_DISABLED=true made the provider a no-op: its
        records would vanish uncounted, and a flush would wait for them."""
        return isinstance(self._logger, Logger)

    def emit(self, rec: DecisionRecord) -> None:
        """Queues one record (no I/O: the batch thread sends it)."""
        span = INVALID_SPAN
        if rec.trace_id is not None:
            span = NonRecordingSpan(SpanContext(rec.trace_id, rec.span_id or 0, is_remote=True))
        self._logger.emit(
            timestamp=rec.time_ns,
            observed_timestamp=time.time_ns(),
            # Never an empty context: the SDK would take the current one instead.
            context=set_span_in_context(span),
            severity_number=SeverityNumber(rec.severity_number),
            severity_text=rec.severity_text,
            body=rec.body,
            attributes=rec.attrs,
            event_name=rec.event_name,
        )

    def abort(self) -> None:
        """Stops retrying: what is not sent yet is reported failed."""
        self._exporter.shutdown()

    def close(self) -> None:
        """Sends what is queued (unless aborted) and ends the batch thread.
        Blocks: at most the exporter's timeout, less once aborted."""
        self._provider.shutdown()
