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
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


M = TypeVar("M", bound=Message)


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


def fix_ids(obj: dict[str, Any]) -> None:
    """The hex ids of one span, link or log record, as base64 for ``json_format``."""
    for key in _ID_KEYS:
        if key in obj:
            obj[key] = _hex_to_b64(obj[key])


def each(obj: Any, key: str, alt: str) -> list[Any]:
    """``obj[key]`` (or its snake_case ``alt``) as a list; absent: empty."""
    items = obj.get(key, obj.get(alt)) if isinstance(obj, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise OtlpJsonError(f"{key} must be an array")
    return items


def items(body: bytes, levels: tuple[tuple[str, str], ...], what: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The JSON document and its innermost objects (spans, log records) along
    ``levels`` (each a camelCase key and its snake_case form), their ids fixed."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpJsonError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OtlpJsonError(f"body must be a JSON object with {levels[0][0]}")
    found: list[Any] = [doc]
    for key, alt in levels:
        found = [item for obj in found for item in each(obj, key, alt)]
    for obj in found:
        if not isinstance(obj, dict):
            raise OtlpJsonError(f"each {what} must be a JSON object")
        fix_ids(obj)
    return doc, found


def parse_as(doc: dict[str, Any], msg: M) -> M:
    """``doc`` parsed into ``msg`` (unknown fields ignored), or OtlpJsonError."""
    try:
        json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpJsonError(f"not an OTLP {type(msg).__name__}: {exc}") from None
    return msg


def parse_request(body: bytes) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from OTLP/JSON, ids read as hex."""
    levels = (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans", "spans"))
    doc, spans = items(body, levels, "span")
    for span in spans:
        for link in each(span, "links", "links"):
            if isinstance(link, dict):
                fix_ids(link)
    return parse_as(doc, ExportTraceServiceRequest())


def to_json(msg: Message) -> bytes:
    text: str = json_format.MessageToJson(msg, indent=None)
    return text.encode()
