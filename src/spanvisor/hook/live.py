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
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("spanvisor.emit")


class ForeignListener(Exception):
    """The endpoint is not this user's serve, whose token is in play
    (:func:`spanvisor.gate.servetoken.bearer`): nothing may be sent there."""


def otlp_exporter(args: argparse.Namespace, signal: str = "traces") -> Any:
    """The OTLP exporter of ``signal`` (``traces`` or ``logs``) the emit
    arguments name: the protocol, the endpoint (a base URL; for HTTP the
    signal's path is put on it, replacing the other signal's) and the token.
    :class:`ForeignListener` where the endpoint is not this user's serve and its
    token is in play."""
    if args.protocol == "grpc":
        endpoint = (
            args.endpoint
            or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        )
        headers = _authorization(endpoint, args.token)
        if signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

            return GrpcLogs(endpoint=endpoint, headers=headers, timeout=args.timeout)
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        return GrpcSpans(endpoint=endpoint, headers=headers, timeout=args.timeout)
    endpoint = args.endpoint
    if endpoint:
        base = endpoint.rstrip("/")
        for path in ("/v1/traces", "/v1/logs"):
            base = base.removesuffix(path)
        endpoint = f"{base}/v1/{signal}"
    headers = _authorization(endpoint, args.token)
    if signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

        return HttpLogs(endpoint=endpoint, headers=headers, timeout=args.timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    return HttpSpans(endpoint=endpoint, headers=headers, timeout=args.timeout)


def _authorization(url: str | None, token: str | None) -> dict[str, str] | None:
    """The bearer header for ``url``. The local serve's token goes only to
    this user's listener on loopback (:func:`servetoken.bearer`, asked now;
    :class:`ForeignListener` for another's), and one the hook read goes nowhere
    when the SDK picks the URL."""
    from spanvisor.gate import servetoken

    sending = servetoken.bearer(url or "", token)
    if sending.refused:  # not this user's serve: nothing goes there
        raise ForeignListener(sending.refused)
    return {"authorization": f"Bearer {sending.token}"} if sending.token else None


def send(
    args: argparse.Namespace, service: str, trace_id: int, root_id: int, name: str, attrs: Mapping[str, Any], at: int
) -> bool:
    """Send one live-channel record for the task's root; False when it failed."""
    from opentelemetry import trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    try:
        exporter = otlp_exporter(args, "logs")
    except ForeignListener as exc:
        log.warning("the %s record was not sent: %s", name, exc)
        return False
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


__all__ = ["ForeignListener", "otlp_exporter", "send"]
