"""Unstamped spans of one trace, waiting for their task root (end order).

On the exporter and receiver paths a span without the processor's stamps
cannot tell which task it belongs to until its ancestors are known. The
tracker keeps such spans per trace: the ones that can cause events whole,
the others only as links for ancestry. A root candidate is *held* until its
ancestry says whether it is a task root or nested in one (or its deadline
passes); then its subtree leaves the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData

PENDING_TTL_S = 3600.0

Ancestry = Literal["root", "wait", "nested"]


@dataclass(slots=True)
class PendingSpan:
    parent_id: str | None
    parent_remote: bool
    data: SpanData | None  # None: a link kept only for ancestry
    candidate: bool


@dataclass
class TraceBuffer:
    spans: dict[str, PendingSpan] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)  # root candidate -> deadline
    touched: float = 0.0

    def ancestry(self, sid: str) -> Ancestry:
        """``root``: no candidate above it; ``nested``: one is; ``wait``: unknown yet."""
        node = self.spans[sid]
        hops = 0
        while True:
            if node.parent_id is None or node.parent_remote:
                return "root"
            parent = self.spans.get(node.parent_id)
            if parent is None:
                return "wait"
            if parent.candidate:
                return "nested"
            node = parent
            hops += 1
            if hops > 10_000:  # a cycle in malformed input
                return "root"

    def take_subtree(self, root_sid: str) -> tuple[SpanData, list[SpanData], list[SpanData], int]:
        """Remove ``root_sid`` and its buffered descendants: (the root's data,
        the descendants' data that arrived before it and after it, each in
        arrival order, how many entries left the buffer). Those after it
        ended after it (late), as the processor would have seen them end."""
        arrived = {sid: i for i, sid in enumerate(self.spans)}
        at = arrived[root_sid]
        datas, taken = self.take_below(root_sid)
        root = self.spans.pop(root_sid)
        assert root.data is not None
        before = [d for d in datas if arrived[d.span_id] < at]
        after = [d for d in datas if arrived[d.span_id] > at]
        return root.data, before, after, taken + 1

    def take_below(self, sid: str) -> tuple[list[SpanData], int]:
        """Remove the buffered descendants of ``sid`` (buffered or not itself):
        their data in the order they arrived, and how many entries left the
        buffer."""
        children: dict[str, list[str]] = {}
        for child, p in self.spans.items():
            if p.parent_id is not None:
                children.setdefault(p.parent_id, []).append(child)
        members: list[str] = []
        stack = list(children.get(sid, ()))
        while stack:
            below = stack.pop()
            members.append(below)
            stack.extend(children.get(below, ()))
        taken = 0
        datas: list[SpanData] = []
        below_sid = set(members)
        # The buffer keeps arrival order: the order a task's spans take effect in.
        for below in [s for s in self.spans if s in below_sid]:
            p = self.spans.pop(below)
            taken += 1
            self.held.pop(below, None)
            if p.data is not None:
                datas.append(p.data)
        return datas, taken


def can_cause_events(span: SpanData) -> bool:
    """Known keys beyond the stamps, known events (exceptions included), or an
    error status. Only such spans are buffered whole, deduplicated, or open a
    task from a descendant."""
    if span.error:
        return True
    a = span.attributes
    if a and not cv.CONTENT_KEYS.isdisjoint(a):
        return True
    return bool(span.events) and any(e.name in cv.KNOWN_EVENTS or e.name == cv.EVENT_EXCEPTION for e in span.events)
