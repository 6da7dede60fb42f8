"""``spanvisor emit``'s live channel: the task's start and heartbeats as log records.

``emit start`` sends a short child span (joined to its task by its stamp)
and, since OTLP would carry the root only when ``emit finish`` sends it,
an ``agent.task.start`` log record in the root's context: the task is then
known as a live task, not a partial one, so it stays open while the shell
agent works, is called stalled when it goes silent and lost when it never
finishes (docs/reference/conventions.md#the-live-channel). ``emit heartbeat`` says
only "still here". Records go to the logs endpoint next to the traces one,
with the same protocol and token; a record that cannot be sent is reported
and costs nothing else (the spans are what the task is made of).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

from spanvisor.cli.emit_spans import otlp_exporter

log = logging.getLogger("spanvisor.emit")


def send(
    args: argparse.Namespace, service: str, trace_id: int, root_id: int, name: str, attrs: Mapping[str, Any], at: int
) -> bool:
    """Send one live-channel record for the task's root; False when it failed."""
    from opentelemetry import trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    exporter = otlp_exporter(args, "logs")
    results: list[Any] = []
    export = exporter.export

    def counted(batch: Any) -> Any:
        result = export(batch)
        results.append(result)
        return result

    exporter.export = counted
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    root = SpanContext(trace_id, root_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    try:
        provider.get_logger("spanvisor.emit").emit(
            timestamp=at,
            context=trace.set_span_in_context(NonRecordingSpan(root)),
            event_name=name,
            attributes=dict(attrs),
        )
    finally:
        provider.shutdown()
    return bool(results) and all(r is LogRecordExportResult.SUCCESS for r in results)


__all__ = ["send"]
