"""SDK spans to :class:`SpanData` on the pipeline thread, copying little.

The processor and the exporter hand the pipeline live SDK spans; these turn
them into what the tracker reads, on the pipeline's thread (never the
agent's).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import StatusCode

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, from_sdk


def snapshot_live(span: Any) -> SpanData | None:
    try:
        return from_sdk(span, resource_attrs={})
    except Exception:
        return None


def light_span(span: Any) -> SpanData:
    """An ended SDK span as SpanData, copying only what the tracker reads.

    Most spans of a task (tool calls, retrievals) carry nothing but the
    processor's stamps; one pass over their keys decides, and they keep
    only the stamps.
    """
    attrs = span.attributes
    stamps: dict[str, Any] = {}
    if attrs:
        for k, v in attrs.items():
            if k in cv.CONTENT_KEYS or k.startswith(cv.RESULT_PREFIX):
                return from_sdk(span)  # results live on a root that may carry only stamps
            if k in cv.STAMP_KEYS:
                stamps[k] = v
    if any(e.name in cv.KNOWN_EVENTS or e.name == cv.EVENT_EXCEPTION for e in span.events):
        return from_sdk(span)  # a failure's type and message live in its exception event
    ctx = span.get_span_context()
    parent = span.parent
    status = span.status
    return SpanData(
        trace_id=format(ctx.trace_id, "032x"),
        span_id=format(ctx.span_id, "016x"),
        parent_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time,
        attributes=stamps,
        error=status is not None and status.status_code is StatusCode.ERROR,
        status_message=status.description if status is not None else None,
        parent_remote=bool(parent is not None and parent.is_remote),
        # The provider's resource names the agent (service.name) when nothing
        # else does; shared by every span, so referenced, not copied.
        resource=span.resource.attributes if span.resource else {},
    )
