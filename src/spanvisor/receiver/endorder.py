"""One resource's scopes, read in the order their spans ended.

The OTLP exporters encode a batch grouped by resource and then by
instrumentation scope, in the order each scope's first span ended: a
framework's root can then come before an LLM client's call that ended
before it. One resource is one process with one clock, so its scopes are
merged back into end order; different resources are never reordered
against each other (docs/reference/conventions.md#clock-skew).
"""

from __future__ import annotations

import heapq

from spanvisor.spans.data import SpanData


def _ended(span: SpanData) -> tuple[int, int]:
    """When the span ended; of two that ended together, the one that
    started later first (a child ends before its parent)."""
    return (span.end_ns if span.end_ns is not None else span.start_ns, -span.start_ns)


def in_end_order(spans: list[SpanData], bounds: list[int]) -> None:
    """Merge the scopes of one resource, ``spans[bounds[0]:]`` with each
    scope from its bound, into the order their spans ended. One resource is
    one process and one clock, so its end times compare; another
    resource's may not (the skew rule), and is never merged with it. Each
    scope keeps its own order (the exporter's, the order its spans ended);
    a full tie goes to the scope sent first, as before."""
    ends = [*bounds[1:], len(spans)]
    groups = [spans[a:b] for a, b in zip(bounds, ends, strict=True) if b > a]
    if len(groups) > 1:
        spans[bounds[0] :] = heapq.merge(*groups, key=_ended)


__all__ = ["in_end_order"]
