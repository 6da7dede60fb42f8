"""A local OTLP/HTTP receiver a test owns (127.0.0.1, port 0): what a
Collector's ``otlphttp`` receiver answers, for the SDK's OTLP exporters.

``POST /v1/traces`` and ``POST /v1/logs`` with a protobuf body (``gzip``
content encoding accepted) are decoded with opentelemetry-proto and kept;
each gets ``200`` with an empty response message, as the Collector answers
a full success. Anything else is a ``404``. ``span_names()`` and
``log_bodies()`` say what arrived.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_KINDS: dict[str, tuple[Any, Any]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}


class OtlpReceiver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                kind = _KINDS.get(self.path.split("?")[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if kind is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                message = kind[0]()
                message.ParseFromString(body)
                with owner._lock:
                    owner.requests.append((self.path, message))
                answer = kind[1]().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-otlp", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def span_names(self) -> list[str]:
        with self._lock:
            got = [m for path, m in self.requests if path.startswith("/v1/traces")]
        return [s.name for m in got for r in m.resource_spans for ss in r.scope_spans for s in ss.spans]

    def log_bodies(self) -> list[str]:
        with self._lock:
            got = [m for path, m in self.requests if path.startswith("/v1/logs")]
        return [
            rec.body.string_value for m in got for r in m.resource_logs for sl in r.scope_logs for rec in sl.log_records
        ]
