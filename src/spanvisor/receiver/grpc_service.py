"""OTLP/gRPC: ``TraceService/Export`` and ``LogsService/Export`` on a ``grpc.aio`` server.

The Collector's load-balancing exporter speaks only gRPC, so this is the
path replicas see in a scaled-out deployment. Backpressure is UNAVAILABLE
with a ``RetryInfo``, sent twice: inside the ``grpc-status-details-bin``
status (what Go clients such as the Collector read) and as the trailer
``google.rpc.retryinfo-bin`` (what the Python exporter reads).

The method is registered with no request deserializer, so the handler gets
the raw bytes: the bearer token is checked before any parsing, and a body
that is not an ``ExportTraceServiceRequest`` is INVALID_ARGUMENT (the
generated servicer would parse first and answer UNKNOWN). Room is checked
before parsing too (:meth:`Ingest.admit`), so a refusal costs no decode; the
journal keeps those same bytes. Logs get the same token check, admission and
answers, and go to the log tails (:mod:`.logs`: not journaled).
``MetricsService/Export`` is checked the same way, acknowledged and not
read (agents that export metrics to the same endpoint print no errors).

While ``serve`` drains at a graceful stop the server keeps running and
admission answers every export UNAVAILABLE with the ``RetryInfo``; it stops
(the port closes) at the end of the drain.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spanvisor.control.bearer import bearer_matches
from spanvisor.receiver.codingcalls import accept_calls, accept_span_sessions
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.drain import InFlight
from spanvisor.receiver.ingest import Ingest, Refusal
from spanvisor.receiver.logs import decode_logs

log = logging.getLogger("spanvisor.receiver")


def retry_trailers(message: str, retry_after_s: float) -> tuple[tuple[str, bytes], ...]:
    seconds = int(retry_after_s)
    info = RetryInfo(retry_delay=Duration(seconds=seconds, nanos=int((retry_after_s - seconds) * 1e9)))
    detail = AnyProto()
    detail.Pack(info)
    status = Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message=message, details=[detail])
    return (
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
        ("grpc-status-details-bin", status.SerializeToString()),
    )


SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"


class TraceService:
    def __init__(self, ingest: Ingest, token: str | None, inflight: InFlight | None = None) -> None:
        self.ingest = ingest
        self._expected = token.encode() if token else None
        # Exports being handled: a graceful stop waits for them to hand over.
        self.inflight = inflight or InFlight()

    def _authorized(self, context: Any) -> bool:
        if self._expected is None:
            return True
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                return bearer_matches(value, self._expected)
        return False

    async def _retry_later(self, context: Any, refusal: Refusal) -> None:
        self.ingest.count("grpc", "retry")
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            refusal.reason,
            trailing_metadata=retry_trailers(refusal.reason, refusal.retry_after_s),
        )

    async def _admitted(self, body: bytes, context: Any, message: Any) -> Any:
        """The token, then room (a refusal parses nothing), then the body as
        ``message``; every failure aborts the call with its status."""
        ingest = self.ingest
        if not self._authorized(context):
            ingest.count("grpc", "unauthenticated")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        refusal = await ingest.admit()
        if refusal is not None:
            await self._retry_later(context, refusal)
        try:
            return message.FromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            ingest.count("grpc", "bad_request")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"body is not a protobuf {message.__name__}: {exc}")

    async def Export(self, body: bytes, context: Any) -> ExportTraceServiceResponse:
        with self.inflight.request():
            return await self._export(body, context)

    async def _export(self, body: bytes, context: Any) -> ExportTraceServiceResponse:
        ingest = self.ingest
        request = await self._admitted(body, context, ExportTraceServiceRequest)
        decoded = decode_request(request, body=body)
        if len(decoded.spans) > ingest.max_spans:
            ingest.count("grpc", "too_large")
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(decoded.spans)} spans in one request; at most {ingest.max_spans}",
            )
        refusal = await ingest.accept(decoded, body)
        if refusal is None:
            refusal = await accept_span_sessions(ingest, request)  # Copilot CLI's sessions, read from its spans
        if refusal is not None:
            await self._retry_later(context, refusal)
        resp = ExportTraceServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_spans = decoded.rejected
            resp.partial_success.error_message = decoded.reason
        ingest.count("grpc", "partial" if decoded.rejected else "ok")
        return resp


class LogsService(TraceService):
    """``LogsService/Export``: the same checks, then the log tails."""

    async def Export(self, body: bytes, context: Any) -> ExportLogsServiceResponse:  # type: ignore[override]
        with self.inflight.request():
            return await self._export_logs(body, context)

    async def _export_logs(self, body: bytes, context: Any) -> ExportLogsServiceResponse:
        ingest = self.ingest
        request = await self._admitted(body, context, ExportLogsServiceRequest)
        decoded = decode_logs(request)
        refusal = await ingest.accept_logs(decoded)  # live records journaled first
        if refusal is None:
            refusal = await accept_calls(ingest, decoded)  # coding-agent calls, journaled
        if refusal is not None:
            await self._retry_later(context, refusal)
        resp = ExportLogsServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_log_records = decoded.rejected
            resp.partial_success.error_message = decoded.reason
        ingest.count("grpc", "logs_partial" if decoded.rejected else "logs_ok")
        return resp


class MetricsService(TraceService):
    """``MetricsService/Export``: the same checks, then nothing (not read)."""

    async def Export(self, body: bytes, context: Any) -> ExportMetricsServiceResponse:  # type: ignore[override]
        with self.inflight.request():
            await self._admitted(body, context, ExportMetricsServiceRequest)
            self.ingest.count("grpc", "metrics_ignored")
            return ExportMetricsServiceResponse()


def make_server(ingest: Ingest, token: str | None, max_body_bytes: int, inflight: InFlight | None = None) -> Any:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_body_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
        compression=None,
    )
    service = TraceService(ingest, token, inflight)
    # No request_deserializer: Export gets the bytes and parses after the auth check.
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                service.Export, response_serializer=ExportTraceServiceResponse.SerializeToString
            )
        },
    )
    logs = LogsService(ingest, token, inflight)
    logs_handler = grpc.method_handlers_generic_handler(
        LOGS_SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                logs.Export, response_serializer=ExportLogsServiceResponse.SerializeToString
            )
        },
    )
    metrics = MetricsService(ingest, token, inflight)
    metrics_handler = grpc.method_handlers_generic_handler(
        METRICS_SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                metrics.Export, response_serializer=ExportMetricsServiceResponse.SerializeToString
            )
        },
    )
    server.add_generic_rpc_handlers((handler, logs_handler, metrics_handler))
    return server


def server_credentials(cert_file: str, key_file: str) -> Any:
    with open(key_file, "rb") as k, open(cert_file, "rb") as c:
        return grpc.ssl_server_credentials([(k.read(), c.read())])
