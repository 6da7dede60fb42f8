"""OTLP/JSON in and out.

OTLP/JSON writes trace and span ids as hex, while the protobuf JSON mapping
(``json_format``) reads every bytes field as base64: parsed as is, a 32-digit
hex trace id silently becomes 24 wrong bytes. The ids are therefore turned
into base64 before parsing. An id that is not valid hex becomes empty, so the
decoder rejects that span with a reason instead of the whole request.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpJsonError(ValueError):
    pass


def _hex_to_b64(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        return ""  # the decoder rejects the span: "invalid trace_id ..."
    return base64.b64encode(raw).decode("ascii")


def _fix_ids(obj: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        if key in obj:
            obj[key] = _hex_to_b64(obj[key])


def _each(obj: Any, key: str, alt: str) -> list[Any]:
    items = obj.get(key, obj.get(alt)) if isinstance(obj, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise OtlpJsonError(f"{key} must be an array")
    return items


def parse_request(body: bytes) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from OTLP/JSON, ids read as hex."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpJsonError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OtlpJsonError("body must be a JSON object with resourceSpans")
    for rs in _each(doc, "resourceSpans", "resource_spans"):
        for ss in _each(rs, "scopeSpans", "scope_spans"):
            for span in _each(ss, "spans", "spans"):
                if not isinstance(span, dict):
                    raise OtlpJsonError("each span must be a JSON object")
                _fix_ids(span)
                for link in _each(span, "links", "links"):
                    if isinstance(link, dict):
                        _fix_ids(link)
    req = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, req, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpJsonError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    return req


def to_json(msg: Message) -> bytes:
    text: str = json_format.MessageToJson(msg, indent=None)
    return text.encode()
