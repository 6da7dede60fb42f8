"""OpenTelemetry logs in-process: each task's last log lines.

Two ways in, both into the pipeline's log tails
(:mod:`spanvisor.logtails.tails`):

* :class:`SpanvisorLogProcessor`, a ``LogRecordProcessor`` next to the span
  processor: ``logger_provider.add_log_record_processor(
  SpanvisorLogProcessor(span_processor))``. ``on_emit`` runs on the agent's
  thread inside its ``logging`` call: it reads six fields of the record,
  makes one tuple and hands it over (two dict lookups and a bounded
  ``deque.append``); no I/O, no lock on the usual path, never raises.
  Records reach the tails at once, before the span that ends the task.
* :class:`SpanvisorLogExporter`, for ``OTEL_LOGS_EXPORTER=spanvisor``
  (entry point ``opentelemetry_logs_exporter``): the SDK wraps it in a
  ``BatchLogRecordProcessor`` (every second by default, ahead of the
  ``BatchSpanProcessor``'s 5 s, so a task's lines usually arrive before its
  root's end).

Neither owns the pipeline's lifecycle: shutting the LoggerProvider down
leaves the pipeline to the span processor or exporter that shares it. Built
without arguments they use the process-wide pipeline
(:func:`spanvisor.otel.attach.default_pipeline`), the one the span processor
and exporter built without arguments use; give a span processor (or its
pipeline) when it was built with its own sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from spanvisor.logtails.records import LogIn, clip, severity_of
from spanvisor.otel.attach import default_pipeline
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import LiveFact, root_of

log = logging.getLogger("spanvisor")


def _pipeline_of(source: Any, path: str) -> Pipeline:
    if source is None:
        return default_pipeline(path)
    if isinstance(source, Pipeline):
        return source
    pipeline = getattr(source, "pipeline", None)  # a span processor or exporter
    if isinstance(pipeline, Pipeline):
        return pipeline
    raise TypeError(f"expected a Pipeline or a spanvisor span processor/exporter, not {type(source).__name__}")


# SeverityNumber is a plain Enum: ``.value`` is a Python property (~300 ns);
# a dict by member is a third of that.
_SEVERITY: dict[Any, int] = {s: s.value for s in SeverityNumber}
_new = tuple.__new__  # LogIn's own __new__ is Python code, twice the cost


def log_in(record: ReadableLogRecord | ReadWriteLogRecord, spans: Any = None, traces: Any = None) -> LogIn:
    """The fields a tail needs of an SDK log record, by reference. ``spans``
    and ``traces``: the span processor's open task spans by span id and the
    traces of its open task roots by trace id, when known (a record of
    either is a task's, of neither is none's)."""
    r = record.log_record
    sev = r.severity_number
    n = _SEVERITY.get(sev, 0) if sev is not None else severity_of(r.severity_text)
    scope = record.instrumentation_scope
    sid = r.span_id
    in_task: bool | None = None
    if spans is not None and sid:
        in_task = sid in spans or (traces is not None and r.trace_id in traces)
    return _new(
        LogIn,
        (
            r.trace_id or 0,
            sid or 0,
            r.timestamp or r.observed_timestamp or 0,
            n,
            r.severity_text,
            scope.name if scope is not None else None,
            clip(r.body),
            in_task,
        ),
    )


def live_fact(record: ReadableLogRecord | ReadWriteLogRecord) -> LiveFact | None:
    """The live-channel fact an SDK log record is (:mod:`spanvisor.spans.live`),
    or None for any other record (a log line, for the tails)."""
    r = record.log_record
    attrs = r.attributes
    name = getattr(r, "event_name", None) or (attrs.get("event.name") if attrs else None)
    if name not in cv.LIVE_EVENTS or not r.trace_id:
        return None
    a = dict(attrs) if attrs else {}
    root = root_of(format(r.span_id, "016x") if r.span_id else "", a)
    if root is None:
        return None
    resource = getattr(record, "resource", None)
    svc = resource.attributes.get(cv.SERVICE_NAME) if resource is not None else None
    return LiveFact(
        format(r.trace_id, "032x"),
        root,
        str(name),
        r.timestamp or r.observed_timestamp or 0,
        a,
        {cv.SERVICE_NAME: svc} if svc is not None else {},
    )


class SpanvisorLogProcessor(LogRecordProcessor):
    """``logger_provider.add_log_record_processor(SpanvisorLogProcessor(span_processor))``."""

    def __init__(self, source: Any = None) -> None:
        self.pipeline = _pipeline_of(source, "processor")
        self._submit = self.pipeline.submit_logs
        # The span processor's open task spans: a record of one belongs to a
        # task even before the pipeline has heard of it (and one of a span
        # outside every task is dropped at once).
        spans, traces = getattr(source, "_opened", None), getattr(source, "task_traces", None)
        self._spans: dict[int, Any] | None = spans if isinstance(spans, dict) else None
        self._traces: dict[int, int] | None = traces if isinstance(traces, dict) else None
        self._errors = 0

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        try:
            fact = live_fact(log_record)
            if fact is not None:
                self.pipeline.submit_live((fact,))
                if fact.name != cv.EVENT_EXCEPTION:
                    return
            # An exception record is the task's error (live) and a line of
            # its log tail, as on serve.
            self._submit((log_in(log_record, self._spans, self._traces),))
        except Exception:  # never into the agent
            self._errors += 1

    def shutdown(self) -> None:
        """The pipeline belongs to the span processor or exporter."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # records are in the tails as soon as they are emitted


class SpanvisorLogExporter(LogRecordExporter):
    """``OTEL_LOGS_EXPORTER=spanvisor`` (behind the SDK's BatchLogRecordProcessor)."""

    def __init__(self, source: Any = None) -> None:
        self.pipeline = _pipeline_of(source, "exporter")

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            facts, tails = [], []
            for record in batch:
                fact = live_fact(record)
                if fact is not None:
                    facts.append(fact)
                if fact is None or fact.name == cv.EVENT_EXCEPTION:  # an error is also a tail line
                    tails.append(log_in(record))
            if facts:
                self.pipeline.submit_live(facts)
            self.pipeline.submit_logs(tails)
            return LogRecordExportResult.SUCCESS
        except Exception:
            return LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        """The pipeline belongs to the span processor or exporter."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def install_log_processor(source: Any = None) -> bool:
    """Add a :class:`SpanvisorLogProcessor` to the global LoggerProvider when
    it is the SDK's; False (and said once) when it is not."""
    try:
        from opentelemetry._logs import get_logger_provider

        provider = get_logger_provider()
        add = getattr(provider, "add_log_record_processor", None)
        if add is None:
            log.info("no SDK LoggerProvider is set; spanvisor keeps no log tails in this process")
            return False
        processor = SpanvisorLogProcessor(source)
        if processor.pipeline.closed:  # spanvisor is off in this process (said once), or shut down
            return False
        add(processor)
        return True
    except Exception:
        log.exception("could not install the spanvisor log processor")
        return False


__all__ = ["SpanvisorLogExporter", "SpanvisorLogProcessor", "install_log_processor", "live_fact", "log_in"]
