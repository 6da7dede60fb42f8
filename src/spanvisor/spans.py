"""SpanData: the one span shape the tracker reads, whatever the source.

The processor and the exporter build it from SDK spans, the receiver from
OTLP protobuf. Ids are lower-case hex (32 digits for traces, 16 for spans),
as in OTLP/JSON and every tracing UI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode


@dataclass(frozen=True, slots=True)
class SpanEventData:
    name: str
    time_ns: int
    attributes: Mapping[str, Any]


@dataclass(slots=True)
class SpanData:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int | None
    attributes: Mapping[str, Any]
    events: Sequence[SpanEventData] = ()
    error: bool = False
    status_message: str | None = None
    parent_remote: bool = False
    resource: Mapping[str, Any] = field(default_factory=dict)


def trace_hex(n: int) -> str:
    return format(n, "032x")


def span_hex(n: int) -> str:
    return format(n, "016x")


def _copy(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    # An open span's attributes are a live view written by the agent's
    # thread; copying can race with a write, so retry a few times.
    if not attrs:
        return {}
    for _ in range(3):
        try:
            return dict(attrs)
        except RuntimeError:
            continue
    return {}


def from_sdk(span: ReadableSpan, resource_attrs: Mapping[str, Any] | None = None) -> SpanData:
    ctx = span.get_span_context()
    parent = span.parent
    status = span.status
    events = tuple(SpanEventData(e.name, e.timestamp or 0, _copy(e.attributes)) for e in span.events)
    return SpanData(
        trace_id=trace_hex(ctx.trace_id) if ctx else "0" * 32,
        span_id=span_hex(ctx.span_id) if ctx else "0" * 16,
        parent_id=span_hex(parent.span_id) if parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time,
        attributes=_copy(span.attributes),
        events=events,
        error=status is not None and status.status_code is StatusCode.ERROR,
        status_message=status.description if status is not None else None,
        parent_remote=bool(parent is not None and parent.is_remote),
        resource=resource_attrs
        if resource_attrs is not None
        else _copy(span.resource.attributes if span.resource else None),
    )
