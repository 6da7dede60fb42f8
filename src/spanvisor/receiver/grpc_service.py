"""OTLP/gRPC: ``TraceService/Export`` on a ``grpc.aio`` server.

The Collector's load-balancing exporter speaks only gRPC, so this is the
path replicas see in a scaled-out deployment. Backpressure is UNAVAILABLE
with a ``RetryInfo``, sent twice: inside the ``grpc-status-details-bin``
status (what Go clients such as the Collector read) and as the trailer
``google.rpc.retryinfo-bin`` (what the Python exporter reads).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.ingest import Ingest

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


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, ingest: Ingest, token: str | None) -> None:
        self.ingest = ingest
        self._expected = f"Bearer {token}".encode() if token else None

    async def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
        ingest = self.ingest
        if self._expected is not None:
            got = b""
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    got = value.encode() if isinstance(value, str) else bytes(value)
            if not hmac.compare_digest(got, self._expected):
                ingest.count("grpc", "unauthenticated")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        decoded = decode_request(request, journal=ingest.journal is not None)
        if len(decoded.spans) > ingest.max_spans:
            ingest.count("grpc", "too_large")
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(decoded.spans)} spans in one request; at most {ingest.max_spans}",
            )
        refusal = await ingest.accept(decoded)
        if refusal is not None:
            ingest.count("grpc", "retry")
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                refusal.reason,
                trailing_metadata=retry_trailers(refusal.reason, refusal.retry_after_s),
            )
        resp = ExportTraceServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_spans = decoded.rejected
            resp.partial_success.error_message = decoded.reason
        ingest.count("grpc", "partial" if decoded.rejected else "ok")
        return resp


def make_server(ingest: Ingest, token: str | None, max_body_bytes: int) -> Any:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_body_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
        compression=None,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TraceService(ingest, token), server
    )
    return server


def server_credentials(cert_file: str, key_file: str) -> Any:
    with open(key_file, "rb") as k, open(cert_file, "rb") as c:
        return grpc.ssl_server_credentials([(k.read(), c.read())])
