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


def endpoint_of(args: argparse.Namespace, signal: str = "traces") -> str:
    """Where the exporter of ``signal`` sends: the endpoint the emit
    arguments name (a base URL; for HTTP the signal's path is put on it,
    replacing the other signal's), else the one the OpenTelemetry SDK would
    pick from its variables (the signal's own, the generic one with the
    signal's path for HTTP, its default). Named to the exporter, so the
    URL the token was asked about is the one it goes to."""
    given = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if args.protocol == "grpc":
        return args.endpoint or given or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4317"
    if not args.endpoint and given:
        return given
    base = (args.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318").rstrip("/")
    for path in ("/v1/traces", "/v1/logs"):
        base = base.removesuffix(path)
    return f"{base}/v1/{signal}"


def otlp_exporter(args: argparse.Namespace, signal: str = "traces") -> Any:
    """The OTLP exporter of ``signal`` (``traces`` or ``logs``) the emit
    arguments name: the protocol, the endpoint (:func:`endpoint_of`) and the
    token. :class:`ForeignListener` where the endpoint is not this user's
    serve and its token is in play."""
    from spanvisor.gate import servetoken

    endpoint = endpoint_of(args, signal)
    headers = _authorization(endpoint, args.token)
    if args.protocol == "grpc":
        if signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

            return GrpcLogs(endpoint=endpoint, headers=headers, timeout=args.timeout)
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        return GrpcSpans(endpoint=endpoint, headers=headers, timeout=args.timeout)
    session = _asking(endpoint, args.token) if servetoken.is_loopback(endpoint) else None
    if signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

        return HttpLogs(endpoint=endpoint, headers=headers, timeout=args.timeout, session=session)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    return HttpSpans(endpoint=endpoint, headers=headers, timeout=args.timeout, session=session)


def _asking(endpoint: str, token: str | None) -> Any:
    """The HTTP exporter's session for a loopback endpoint: it asks again
    before each attempt (the exporter retries for up to its timeout)
    whether ``endpoint`` may be sent to, so a serve that went away after
    the first look, its port taken meanwhile, is not sent the retry; and
    never through a proxy the environment names (the token in the clear).
    Elsewhere the SDK's own session (its credential provider)."""
    import requests

    from spanvisor.gate import servetoken

    class Asking(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            refused = servetoken.bearer(endpoint, token).refused
            if refused:
                raise requests.ConnectionError(refused)
            return super().request(method, url, *args, **kwargs)

    session = Asking()
    session.trust_env = False
    return session


def _authorization(url: str, token: str | None) -> dict[str, str] | None:
    """The bearer header for ``url``. The local serve's token goes only to
    this user's listener on loopback (:func:`servetoken.bearer`, asked now;
    :class:`ForeignListener` for another's)."""
    from spanvisor.gate import servetoken

    sending = servetoken.bearer(url, token)
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


__all__ = ["ForeignListener", "endpoint_of", "otlp_exporter", "send"]
