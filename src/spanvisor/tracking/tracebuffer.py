"""Unstamped spans waiting for their task root (end order).

On the exporter and receiver paths a span without the processor's stamps
cannot tell which task it belongs to until its ancestors are known. The
tracker keeps such spans per trace (:class:`TraceBuffer`; all of them in
:class:`PendingTraces`, bounded): the ones that can cause events whole, the
others only as links for ancestry. A root candidate is *held* until its
ancestry says whether it is a task root or nested in one (or its deadline
passes, or its live records say it is one); then its :class:`Subtree`
leaves the buffer and the tracker turns it into events.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from spanvisor.spans import conventions as cv
from spanvisor.spans import current as now
from spanvisor.spans.data import SpanData
from spanvisor.stats import PipelineStats

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


def chain_run(span: SpanData, buf: TraceBuffer | None) -> SpanData | None:
    """A span with no parent that ends as no task root: when it is a
    framework's top-level run (an OpenInference CHAIN whose buffered subtree
    holds a model call and no agent span: LlamaIndex's agent workflows), the
    span as a task root, titled by its name without the method
    (:mod:`spanvisor.spans.current`); else None. Decided at its end, on every
    path (in process too, its trace goes over in end order)."""
    if buf is None or not now.is_chain_run(span.attributes, span.parent_id) or cv.TASK_NAME in span.attributes:
        return None
    model = False
    for p in buf.spans.values():
        if p.candidate:
            return None  # an agent span below is the task (CrewAI's), not this run
        if not model and p.data is not None and cv.is_model_call(p.data.attributes):
            model = True
    if not model:
        return None
    return replace(span, attributes={**span.attributes, cv.TASK_NAME: now.title(span.name)})


def unended_run(trace_id: str, buf: TraceBuffer) -> Subtree | None:
    """A trace forgotten after waiting :data:`PENDING_TTL_S` for its root:
    when a failed step under that missing root (an ERROR span neither a
    model call nor a tool call, smolagents' ``Step n`` CHAIN) and a model
    call below it say a run failed without ending its root, that run as a
    failed task under a stand-in root (no name; its agent the service's),
    saying why; else None (the trace is forgotten, as before)."""
    failed = next(
        (
            p.data
            for p in buf.spans.values()
            if p.data is not None
            and p.data.error
            and p.parent_id is not None
            and p.parent_id not in buf.spans
            and not cv.is_model_call(p.data.attributes)
            and not cv.is_tool_call(p.data.attributes)
        ),
        None,
    )
    if failed is None or failed.parent_id is None:
        return None
    members, _ = buf.take_below(failed.parent_id)
    if not any(cv.is_model_call(d.attributes) for d in members):
        return None
    note = (
        f"its root span never arrived: finished as failed, {PENDING_TTL_S:.0f} s after its step {failed.name!r} failed"
    )
    start = min(d.start_ns for d in members)
    end = max(d.end_ns or d.start_ns for d in members)
    parent = failed.parent_id
    root = SpanData(trace_id, parent, None, "", start, end, {}, error=True, resource=failed.resource, notes=(note,))
    return Subtree(trace_id, root, members, [], len(members))


class Subtree(NamedTuple):
    """A decided task root and what of its trace waited with it."""

    trace_id: str
    root: SpanData
    on_time: list[SpanData]  # arrived before the root, in arrival order
    late: list[SpanData]  # arrived after it (ended after it, as in-process)
    taken: int  # entries that left the buffer


class PendingTraces:
    """Every trace's buffer, oldest touched first, bounded in spans."""

    def __init__(self, hold_s: float, max_spans: int, stats: PipelineStats, clock: Callable[[], float]) -> None:
        self._hold_s = hold_s
        self._max = max_spans
        self._stats = stats
        self._clock = clock
        self._buffers: OrderedDict[str, TraceBuffer] = OrderedDict()
        self._count = 0

    def waiting(self, trace_id: str) -> bool:
        return trace_id in self._buffers

    def buffer(self, trace_id: str) -> TraceBuffer | None:
        return self._buffers.get(trace_id)

    def hold(self, span: SpanData, interesting: bool, candidate: bool) -> list[Subtree]:
        """Keep ``span`` (whole, or as a link when it cannot cause events);
        the task roots its arrival decides."""
        tid = span.trace_id
        buf = self._buffers.get(tid)
        if buf is None:
            buf = self._buffers[tid] = TraceBuffer()
        self._buffers.move_to_end(tid)
        buf.touched = self._clock()
        buf.spans[span.span_id] = PendingSpan(
            span.parent_id, span.parent_remote, span if interesting else None, candidate
        )
        self._count += 1
        if candidate:
            buf.held[span.span_id] = buf.touched + self._hold_s
        out = self._resolve(tid, buf, ())
        self._bound()
        return out

    def below(self, trace_id: str, sid: str) -> list[SpanData]:
        """What waits of ``sid``'s subtree (not ``sid`` itself), in arrival order."""
        buf = self._buffers.get(trace_id)
        if buf is None:
            return []
        datas, taken = buf.take_below(sid)
        self._taken(trace_id, buf, taken)
        return datas

    def decide(self, trace_id: str, root_sid: str) -> Subtree | None:
        """``root_sid`` is a task root (its start record said so): its subtree,
        if it was held here; None if it was not."""
        buf = self._buffers.get(trace_id)
        if buf is None or root_sid not in buf.held:
            return None
        del buf.held[root_sid]
        sub = self._take(trace_id, buf, root_sid)
        if not buf.spans:
            self._buffers.pop(trace_id, None)
        return sub

    def expire(self, now: float) -> list[Subtree]:
        """Held roots past their deadline (task roots now); stale traces forgotten."""
        out: list[Subtree] = []
        for tid, buf in list(self._buffers.items()):
            due = [sid for sid, deadline in buf.held.items() if deadline <= now]
            if due:
                out.extend(self._resolve(tid, buf, due))
            if tid in self._buffers and now - buf.touched > PENDING_TTL_S and not buf.held:
                del self._buffers[tid]
                self._count -= len(buf.spans)
                self._stats.inc("evicted_tasks_total", reason="expired")
                run = unended_run(tid, buf)
                if run is not None:
                    out.append(run)
        return out

    def _resolve(self, trace_id: str, buf: TraceBuffer, force: Iterable[str]) -> list[Subtree]:
        """Every held root candidate whose ancestry is now known."""
        out: list[Subtree] = []
        forced = set(force)
        for sid in list(buf.held):
            if sid not in buf.held:
                continue
            # A nested candidate stays held: its outer root takes it along, or
            # its deadline passes and it becomes a task of its own.
            if sid in forced or buf.ancestry(sid) == "root":
                del buf.held[sid]
                out.append(self._take(trace_id, buf, sid))
        if not buf.spans:
            self._buffers.pop(trace_id, None)
        return out

    def _take(self, trace_id: str, buf: TraceBuffer, root_sid: str) -> Subtree:
        root, on_time, late, taken = buf.take_subtree(root_sid)
        self._count -= taken
        return Subtree(trace_id, root, on_time, late, taken)

    def _taken(self, trace_id: str, buf: TraceBuffer, taken: int) -> None:
        self._count -= taken
        if not buf.spans:
            self._buffers.pop(trace_id, None)

    def _bound(self) -> None:
        while self._count > self._max and self._buffers:
            _, buf = self._buffers.popitem(last=False)
            self._count -= len(buf.spans)
            self._stats.drop(
                "pending_spans_evicted",
                len(buf.spans),
                detail="too many spans waiting for their task root; raise the limit or route by trace id",
            )
