"""OTLP/HTTP: ``POST /v1/traces`` and ``POST /v1/logs``, protobuf or JSON, gzip or not.

``POST /v1/metrics`` is acknowledged and not read: agents that export
metrics to the endpoint of their traces and logs (the coding-agent CLIs do
by default) would otherwise print an exporter error for every 404.

Answers follow the OTLP spec: 200 with an ``ExportTraceServiceResponse``
(``partial_success`` when spans were rejected), 400 with a ``google.rpc.Status``
for bad data (not retried), 413 above the decompressed size limit, 503 with
``Retry-After`` under backpressure (retried), all in the request's content
type. The body is read in chunks and the size is checked after
decompression, so a small gzip bomb cannot inflate past the limit.

Room is checked before the body is read (:meth:`Ingest.admit`): a refusal
parses nothing, and aiohttp discards the unread body. Logs get the same
token check, admission and answers, and go to the log tails
(:mod:`.logs`: not journaled).

While ``serve`` drains at a graceful stop the port stays open: exports are
refused by admission (503 + ``Retry-After``), and the control API's routes
by :func:`_refuse_while_draining` with a JSON 503, since the pipeline they
act on is shutting down.

Before any of that, every route checks ``Host`` and ``Origin``, and every
state-changing route but the exports needs a JSON content type
(:mod:`.browser_guard`): a web page in someone's browser must not reach the
control API. The hook route answers those refusals with its deny JSON.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf.message import DecodeError, Message
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
from spanvisor.receiver import browser_guard, control_api, hook_http
from spanvisor.receiver.browser_guard import HostPolicy, Refused
from spanvisor.receiver.codingcalls import accept_calls, accept_span_sessions
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.drain import InFlight
from spanvisor.receiver.ingest import Ingest, Refusal
from spanvisor.receiver.logs import decode_logs, parse_logs_json
from spanvisor.receiver.otlp_json import OtlpJsonError, parse_request, to_json

log = logging.getLogger("spanvisor.receiver")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# google.rpc.Code values used in Status bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16


class _TooLarge(Exception):
    pass


class _BadBody(Exception):
    pass


def _reply(status: int, msg: Message, ctype: str, headers: dict[str, str] | None = None) -> web.Response:
    body = to_json(msg) if ctype == JSON else msg.SerializeToString()
    return web.Response(status=status, body=body, content_type=ctype, headers=headers)


def _error(status: int, code: int, message: str, ctype: str, **headers: str) -> web.Response:
    return _reply(status, Status(code=code, message=message), ctype, headers or None)


async def _read_body(request: web.Request, limit: int) -> tuple[bytes, bytes | None]:
    """(the body, decompressed; the gzip bytes as received, or None)."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity", ""):
        raise _BadBody(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    gz = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    out = bytearray()
    raw = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        if gz is None:
            out += chunk
        else:
            raw += chunk
            try:
                # max_length bounds what one chunk may inflate to.
                out += gz.decompress(chunk, limit + 1 - len(out))
            except zlib.error as exc:
                raise _BadBody(f"body is not valid gzip: {exc}") from None
            if gz.unconsumed_tail:
                raise _TooLarge()
        if len(out) > limit:
            raise _TooLarge()
    if gz is not None:
        if not gz.eof:
            raise _BadBody("gzip body is truncated")
        out += gz.flush()
        if len(out) > limit:
            raise _TooLarge()
        return bytes(out), bytes(raw)
    return bytes(out), None


def _retry_later(ingest: Ingest, refusal: Refusal, reply_type: str) -> web.Response:
    ingest.count("http", "retry")
    return _error(503, _UNAVAILABLE, refusal.reason, reply_type, **{"Retry-After": refusal.retry_after_header})


async def _read_admitted(
    request: web.Request, ingest: Ingest, expected: bytes | None, max_body_bytes: int
) -> web.Response | tuple[bytes, bytes | None, str]:
    """What every export does first: the token, the content type, room, then
    the body; an answer, or (the body, its gzip bytes or None, the reply type)."""
    ctype = request.content_type
    reply_type = JSON if ctype == JSON else PROTOBUF
    if expected is not None and not bearer_matches(request.headers.get("Authorization"), expected):
        ingest.count("http", "unauthenticated")
        return _error(
            401, _UNAUTHENTICATED, "missing or wrong bearer token", reply_type, **{"WWW-Authenticate": "Bearer"}
        )
    if ctype not in (PROTOBUF, JSON):
        ingest.count("http", "bad_request")
        return web.Response(status=415, text=f"unsupported Content-Type {ctype!r}; use {PROTOBUF} or {JSON}\n")
    # Room first: a refusal reads and parses nothing.
    refusal = await ingest.admit()
    if refusal is not None:
        return _retry_later(ingest, refusal, reply_type)
    try:
        body, gzipped = await _read_body(request, max_body_bytes)
    except _TooLarge:
        ingest.count("http", "too_large")
        return _error(
            413,
            _RESOURCE_EXHAUSTED,
            f"body exceeds {max_body_bytes} bytes after decompression; "
            "send smaller batches or raise SPANVISOR_MAX_BODY_BYTES",
            reply_type,
        )
    except _BadBody as exc:
        ingest.count("http", "bad_request")
        return _error(400, _INVALID_ARGUMENT, str(exc), reply_type)
    return body, gzipped, reply_type


OTLP_PATHS = frozenset({"/v1/traces", "/v1/logs", "/v1/metrics"})
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refuse_while_draining(
    ingest: Ingest, draining: Callable[[], bool]
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every route but the exports (admission refuses those in their own
    format) answers 503 + ``Retry-After`` while the receiver drains; a hook
    route, its CLI's deny."""

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path in OTLP_PATHS or not draining():
            return await handler(request)
        ingest.count("http", "retry")
        # A hook route's answer is its CLI's deny: Claude Code runs the call
        # on a 503 unless its entry says onFailure: block.
        hooks = hook_http.refusal(request.path, "spanvisor: serve is shutting down; denied")
        if hooks is not None:
            return hooks
        doc = {"error": "spanvisor is shutting down; retry on another replica or after the restart"}
        return web.Response(
            status=503,
            text=json.dumps(doc),
            content_type=JSON,
            headers={"Retry-After": Refusal("draining", ingest.retry_after_s).retry_after_header},
        )

    return middleware


def _refused(request: web.Request, refusal: Refused) -> web.StreamResponse:
    # A hook route's refusal is its CLI's deny (Claude Code runs the call on
    # any answer but a 200 with a decision).
    hooks = hook_http.refusal(request.path, f"spanvisor: {refusal.message}; denied")
    return hooks if hooks is not None else browser_guard.json_answer(request, refusal)


def make_app(
    ingest: Ingest,
    token: str | None,
    max_body_bytes: int,
    inflight: InFlight | None = None,
    draining: Callable[[], bool] = lambda: False,
    hosts: HostPolicy | None = None,
    own_url: Callable[[], str] | None = None,
) -> web.Application:
    """``inflight`` counts the exports being handled (a graceful stop waits
    for them); ``draining`` is true while the receiver drains. ``hosts``:
    the names a request may give in ``Host`` (loopback names and addresses
    only without it); ``own_url``: this port's URL from serve's configuration,
    for the hooks the hook route runs."""
    expected = token.encode() if token else None
    tracked = inflight or InFlight()

    async def export(request: web.Request) -> web.Response:
        with tracked.request():
            return await _export(request)

    async def export_logs(request: web.Request) -> web.Response:
        with tracked.request():
            return await _export_logs(request)

    async def _export(request: web.Request) -> web.Response:
        got = await _read_admitted(request, ingest, expected, max_body_bytes)
        if isinstance(got, web.Response):
            return got
        body, gzipped, reply_type = got
        ctype = request.content_type
        try:
            req = parse_request(body) if ctype == JSON else ExportTraceServiceRequest.FromString(body)
        except OtlpJsonError as exc:
            ingest.count("http", "bad_request")
            return _error(400, _INVALID_ARGUMENT, str(exc), reply_type)
        except (DecodeError, RecursionError, ValueError) as exc:
            ingest.count("http", "bad_request")
            return _error(
                400, _INVALID_ARGUMENT, f"body is not a protobuf ExportTraceServiceRequest: {exc}", reply_type
            )
        decoded = decode_request(req, body=None if ctype == JSON else body)
        if len(decoded.spans) > ingest.max_spans:
            ingest.count("http", "too_large")
            return _error(
                413,
                _RESOURCE_EXHAUSTED,
                f"{len(decoded.spans)} spans in one request; at most {ingest.max_spans}",
                reply_type,
            )
        # The journal keeps the body as received: gzip as it came, JSON as
        # the protobuf it was parsed into.
        as_received = req.SerializeToString() if ctype == JSON else (gzipped or body)
        refusal = await ingest.accept(decoded, as_received)
        if refusal is None:
            refusal = await accept_span_sessions(ingest, req)  # Copilot CLI's sessions, read from its spans
        if refusal is not None:
            return _retry_later(ingest, refusal, reply_type)
        resp = ExportTraceServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_spans = decoded.rejected
            resp.partial_success.error_message = decoded.reason
        ingest.count("http", "partial" if decoded.rejected else "ok")
        return _reply(200, resp, reply_type)

    async def _export_logs(request: web.Request) -> web.Response:
        got = await _read_admitted(request, ingest, expected, max_body_bytes)
        if isinstance(got, web.Response):
            return got
        body, _, reply_type = got
        try:
            req = parse_logs_json(body) if request.content_type == JSON else ExportLogsServiceRequest.FromString(body)
        except OtlpJsonError as exc:
            ingest.count("http", "bad_request")
            return _error(400, _INVALID_ARGUMENT, str(exc), reply_type)
        except (DecodeError, RecursionError, ValueError) as exc:
            ingest.count("http", "bad_request")
            return _error(400, _INVALID_ARGUMENT, f"body is not a protobuf ExportLogsServiceRequest: {exc}", reply_type)
        decoded = decode_logs(req)
        refusal = await ingest.accept_logs(decoded)  # live records journaled first
        if refusal is None:
            refusal = await accept_calls(ingest, decoded)  # coding-agent calls, journaled
        if refusal is not None:
            return _retry_later(ingest, refusal, reply_type)
        resp = ExportLogsServiceResponse()
        if decoded.rejected:
            resp.partial_success.rejected_log_records = decoded.rejected
            resp.partial_success.error_message = decoded.reason
        ingest.count("http", "logs_partial" if decoded.rejected else "logs_ok")
        return _reply(200, resp, reply_type)

    async def metrics(request: web.Request) -> web.Response:
        got = await _read_admitted(request, ingest, expected, max_body_bytes)
        if isinstance(got, web.Response):
            return got
        body, _, reply_type = got
        try:
            if request.content_type == JSON:
                json.loads(body)
            else:
                ExportMetricsServiceRequest.FromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            ingest.count("http", "bad_request")
            return _error(400, _INVALID_ARGUMENT, f"body is not an ExportMetricsServiceRequest: {exc}", reply_type)
        ingest.count("http", "metrics_ignored")
        return _reply(200, ExportMetricsServiceResponse(), reply_type)

    # aiohttp would inflate gzip bodies itself, unbounded per chunk; doing
    # it here lets max_length cap the memory a compressed bomb can take.
    app = web.Application(
        client_max_size=max_body_bytes,
        handler_args={"auto_decompress": False},
        middlewares=[
            browser_guard.middleware(
                hosts or HostPolicy(), json_writes=lambda path: path not in OTLP_PATHS, answer=_refused
            ),
            _refuse_while_draining(ingest, draining),
        ],
    )
    app.router.add_post("/v1/traces", export)
    app.router.add_post("/v1/logs", export_logs)
    app.router.add_post("/v1/metrics", metrics)
    control_api.add_routes(app, ingest.pipeline, token, own_url)
    return app
