"""Unstamped spans waiting for their task root (end order).

On the exporter and receiver paths a span without the processor's stamps
cannot tell which task it belongs to until its ancestors are known. The
tracker keeps such spans per trace (:class:`TraceBuffer`; all of them in
:class:`PendingTraces`, bounded): the ones that can cause events whole, the
others only as links for ancestry. A root candidate is *held* until its
ancestry says whether it is a task root or nested in one (or its deadline
passes, or its live records say it is one); then its :class:`Subtree`
leaves the buffer and the tracker turns it into events.

A trace may also have a *provisional task* (:mod:`.provisional`), opened
before its root arrived: its spans' entries stay here as links **marked**
with that task's key (and the span it was opened under, not arrived yet, as
a marked placeholder), so a span whose parent is marked joins it at once,
and the subtree a root decision takes finishes that task when it holds a
marked link (:attr:`Subtree.task`). A marked link counts as a task
ancestor: a candidate below it is nested.

Memory is bounded twice: in spans (``max_pending_spans``) and in bytes
(:attr:`PendingSettings.max_bytes`, by :func:`span_bytes`, an estimate made
once when a span is kept). Past either bound whole traces go, in this
order: first those that show nothing of an agent (no model call, tool call
or agent span: :func:`shows_agent`), oldest touched first; then the others,
oldest touched first (an open provisional task's last). A trace that shows
nothing of an agent is also forgotten sooner, after
:attr:`PendingSettings.plain_ttl_s` untouched, not :data:`PENDING_TTL_S`.
Every eviction is counted once, by reason (docs/design/architecture.md#drops).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.stats import PipelineStats

Key = tuple[str, str]  # (trace id, root span id)

PENDING_TTL_S = 3600.0

# The byte estimate of what is kept (:func:`span_bytes`), from tracemalloc on
# CPython 3.11 (a link about 250 bytes, a span kept whole with one short
# attribute about 670, a trace's own buffer about 660), rounded up. Strings
# shared with the receiver's vocabulary are counted as if they were not.
LINK_BYTES = 256  # a PendingSpan with its slots, its dict entry, its id string
DATA_BYTES = 320  # a SpanData kept whole: its slots, ids, times, its attribute dict
ATTR_BYTES = 64  # one attribute: its dict slot and a small value's object, beyond its strings
EVENT_BYTES = 160  # one span event: its object, name and attribute dict
TRACE_BYTES = 640  # a trace's TraceBuffer, its dicts and its entries in PendingTraces


DEFAULT_PENDING_BYTES = 64 * 1024 * 1024
# A trace that shows nothing of an agent, kept untouched: 10x the root hold
# (30 s), longer than a Collector's batching and retries, far below the hour
# an agent trace is kept for its root.
DEFAULT_PLAIN_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class PendingSettings:
    """The bounds of :class:`PendingTraces` that the settings table sets
    (``SPANVISOR_PENDING_BYTES``, ``SPANVISOR_PENDING_PLAIN_TTL``)."""

    # Bytes kept (by :func:`span_bytes`) for spans waiting for their task root.
    max_bytes: int = DEFAULT_PENDING_BYTES
    # How long a trace that shows nothing of an agent is kept untouched.
    plain_ttl_s: float = DEFAULT_PLAIN_TTL_S


def _value_bytes(v: object) -> int:
    if isinstance(v, str | bytes):
        return len(v)
    if isinstance(v, tuple | list):
        return 8 * len(v) + sum(len(x) for x in v if isinstance(x, str | bytes))
    return 0


def span_bytes(span: SpanData | None) -> int:
    """About how many bytes keeping ``span`` costs (a link when None): made
    once when it is kept, from its attributes' and events' sizes (no deep
    ``sizeof``); the span's resource is shared by its batch and not counted."""
    if span is None:
        return LINK_BYTES
    n = LINK_BYTES + DATA_BYTES + len(span.name)
    for k, v in span.attributes.items():
        n += ATTR_BYTES + len(k) + _value_bytes(v)
    for e in span.events:
        n += EVENT_BYTES + len(e.name) + ATTR_BYTES * len(e.attributes)
    return n


Ancestry = Literal["root", "wait", "nested"]


@dataclass(slots=True)
class PendingSpan:
    parent_id: str | None
    parent_remote: bool
    data: SpanData | None  # None: a link kept only for ancestry
    candidate: bool
    # The provisional task this span is already part of (its data read there).
    task: Key | None = None
    # The span a provisional task was opened under, not arrived yet.
    placeholder: bool = False
    # Its :func:`span_bytes` when kept (what leaving gives back).
    size: int = LINK_BYTES


@dataclass
class TraceBuffer:
    spans: dict[str, PendingSpan] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)  # root candidate -> deadline
    touched: float = 0.0
    # What its spans held so far say of an agent at work (.provisional's rule):
    # model calls, tool calls, agent spans or spans naming an agent.
    calls: int = 0
    tools: int = 0
    agents: int = 0
    # The open provisional task of this trace: the buffer is kept while it is.
    task: Key | None = None
    # Counted as held back (a model call's trace that made no task) once.
    held_back: bool = False
    # The :attr:`PendingSpan.size` of its spans, summed.
    size: int = 0

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
            if parent.candidate or parent.task is not None:
                return "nested"
            node = parent
            hops += 1
            if hops > 10_000:  # a cycle in malformed input
                return "root"

    def take_subtree(self, root_sid: str) -> tuple[SpanData, list[SpanData], list[SpanData], int, Key | None]:
        """Remove ``root_sid`` and its buffered descendants: (the root's data,
        the descendants' data that arrived before it and after it, each in
        arrival order, how many entries left the buffer, the provisional
        task one of them was marked with). Those after it ended after it
        (late), as the processor would have seen them end."""
        arrived = {sid: i for i, sid in enumerate(self.spans)}
        at = arrived[root_sid]
        datas, taken, task = self.take_below(root_sid)
        root = self.spans.pop(root_sid)
        self.size -= root.size
        assert root.data is not None
        before = [d for d in datas if arrived[d.span_id] < at]
        after = [d for d in datas if arrived[d.span_id] > at]
        return root.data, before, after, taken + 1, root.task or task

    def below(self, sid: str) -> list[str]:
        """The buffered descendants of ``sid`` (buffered or not itself), in arrival order."""
        children: dict[str, list[str]] = {}
        for child, p in self.spans.items():
            if p.parent_id is not None:
                children.setdefault(p.parent_id, []).append(child)
        members: set[str] = set()
        stack = list(children.get(sid, ()))
        while stack:
            below = stack.pop()
            members.add(below)
            stack.extend(children.get(below, ()))
        # The buffer keeps arrival order: the order a task's spans take effect in.
        return [s for s in self.spans if s in members] if members else []

    def take_below(self, sid: str) -> tuple[list[SpanData], int, Key | None]:
        """Remove the buffered descendants of ``sid`` (buffered or not itself):
        their data in the order they arrived, how many entries left the
        buffer, and the provisional task one of them was marked with."""
        taken = 0
        task: Key | None = None
        datas: list[SpanData] = []
        for below in self.below(sid):
            p = self.spans.pop(below)
            self.size -= p.size
            taken += 1
            self.held.pop(below, None)
            task = task or p.task
            if p.data is not None:
                datas.append(p.data)
        return datas, taken, task


def shows_agent(buf: TraceBuffer) -> bool:
    """Whether a trace's spans held so far show anything of an agent: a model
    call, a tool call, an agent span or one naming an agent, or a
    provisional task. One that does not goes first at a bound, and sooner."""
    return bool(buf.calls or buf.tools or buf.agents) or buf.task is not None


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
    members, _, _ = buf.take_below(failed.parent_id)
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
    # The provisional task the root or one of the taken spans belongs to:
    # this root is that task's (it is never a task of its own).
    task: Key | None = None
    # The root is no root: an agent span nested in ``task``, held in vain.
    nested: bool = False


class PendingTraces:
    """Every trace's buffer, oldest touched first, bounded in spans and in
    bytes; traces that show nothing of an agent go first, and sooner."""

    def __init__(
        self,
        hold_s: float,
        max_spans: int,
        stats: PipelineStats,
        clock: Callable[[], float],
        limits: PendingSettings | None = None,
    ) -> None:
        self._hold_s = hold_s
        self._max = max_spans
        self._stats = stats
        self._clock = clock
        self._limits = limits or PendingSettings()
        self._buffers: OrderedDict[str, TraceBuffer] = OrderedDict()
        # The traces of ``_buffers`` that show nothing of an agent, oldest
        # touched first: evicted first, forgotten after the plain TTL.
        self._plain: OrderedDict[str, None] = OrderedDict()
        self._count = 0
        self._bytes = 0

    @property
    def spans(self) -> int:
        """Entries kept, every trace's."""
        return self._count

    @property
    def held_bytes(self) -> int:
        """Their :func:`span_bytes`, summed, and each trace's :data:`TRACE_BYTES`."""
        return self._bytes

    @property
    def limits(self) -> PendingSettings:
        return self._limits

    def waiting(self, trace_id: str) -> bool:
        return trace_id in self._buffers

    def buffer(self, trace_id: str) -> TraceBuffer | None:
        return self._buffers.get(trace_id)

    def hold(
        self, span: SpanData, interesting: bool, candidate: bool, keep: bool = False, task: Key | None = None
    ) -> list[Subtree]:
        """Keep ``span`` (whole, or as a link when it cannot cause events,
        unless ``keep``: a trace's top span, which a provisional task may
        need as its root), marked with ``task`` if given; the task roots
        its arrival decides."""
        tid = span.trace_id
        buf = self._buffers.get(tid)
        if buf is None:
            buf = self._buffers[tid] = TraceBuffer()
            self._bytes += TRACE_BYTES
        self._buffers.move_to_end(tid)
        buf.touched = self._clock()
        sid = span.span_id
        was = buf.spans.get(sid)
        if was is None:
            self._count += 1
        else:
            self._sized(buf, -was.size)
            if was.placeholder:  # the span a provisional task hangs from: its arrival is now
                del buf.spans[sid]
        data = span if interesting or keep else None
        size = span_bytes(data)
        buf.spans[sid] = PendingSpan(span.parent_id, span.parent_remote, data, candidate, task, size=size)
        self._sized(buf, size)
        if interesting:
            a = span.attributes
            if cv.is_model_call(a):
                buf.calls += 1
            elif cv.is_tool_call(a):
                buf.tools += 1
            if candidate or cv.GEN_AI_AGENT_NAME in a or cv.AGENT_NAME in a:
                buf.agents += 1
        if shows_agent(buf):
            if self._plain:
                self._plain.pop(tid, None)
        else:
            self._plain[tid] = None
            self._plain.move_to_end(tid)
        if candidate:
            buf.held[sid] = buf.touched + self._hold_s
        out = self._resolve(tid, buf, ())
        self._bound()
        return out

    def link(self, span: SpanData, task: Key) -> None:
        """``span`` joined provisional task ``task`` (its data read there): a marked link."""
        buf = self._buffers.get(span.trace_id)
        if buf is None:
            return
        was = buf.spans.get(span.span_id)
        if was is None:
            self._count += 1
        else:
            self._sized(buf, -was.size)
        buf.spans[span.span_id] = PendingSpan(span.parent_id, span.parent_remote, None, False, task)
        self._sized(buf, LINK_BYTES)

    def placeholder(self, trace_id: str, sid: str, task: Key) -> None:
        """``sid`` (not arrived) is where provisional ``task`` hangs: a marked placeholder."""
        buf = self._buffers.get(trace_id)
        if buf is not None and sid not in buf.spans:
            buf.spans[sid] = PendingSpan(None, False, None, False, task, placeholder=True)
            self._count += 1
            self._sized(buf, LINK_BYTES)

    def unmark(self, trace_id: str, task: Key) -> None:
        """``task``'s links leave its trace's buffer (it ended with its top span)."""
        buf = self._buffers.get(trace_id)
        if buf is not None:
            gone = [sid for sid, p in buf.spans.items() if p.task == task]
            for sid in gone:
                self._sized(buf, -buf.spans.pop(sid).size)
                buf.held.pop(sid, None)
            self._taken(trace_id, buf, len(gone))

    def release(self, task: Key) -> None:
        """``task``'s trace buffer is kept for it no longer (it ended)."""
        buf = self._buffers.get(task[0])
        if buf is not None and buf.task == task:
            buf.task = None
            if not buf.spans:
                self._forget(task[0])

    def below(self, trace_id: str, sid: str) -> list[SpanData]:
        """What waits of ``sid``'s subtree (not ``sid`` itself), in arrival order."""
        buf = self._buffers.get(trace_id)
        if buf is None:
            return []
        was = buf.size
        datas, taken, _ = buf.take_below(sid)
        self._bytes -= was - buf.size
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
            self._forget(trace_id)
        return sub

    def expire(self, now: float) -> list[Subtree]:
        """Held roots past their deadline (task roots now); stale traces
        forgotten: one that shows nothing of an agent after the plain TTL,
        the others after :data:`PENDING_TTL_S`."""
        out: list[Subtree] = []
        ttl = self._limits.plain_ttl_s
        while self._plain:  # oldest touched first: stops at the first one still fresh
            tid = next(iter(self._plain))
            buf = self._buffers.get(tid)
            if buf is not None and not shows_agent(buf):
                if now - buf.touched <= ttl:
                    break
                self._evict(tid, buf)
                self._stats.inc("evicted_tasks_total", reason="expired_plain")
            self._plain.pop(tid, None)
        for tid, buf in list(self._buffers.items()):
            due = [sid for sid, deadline in buf.held.items() if deadline <= now]
            if due:
                out.extend(self._resolve(tid, buf, due))
            if tid in self._buffers and now - buf.touched > PENDING_TTL_S and not buf.held and buf.task is None:
                self._evict(tid, buf)
                self._stats.inc("evicted_tasks_total", reason="expired")
                if buf.calls and not buf.held_back:  # a model call's trace that made no task
                    self._stats.inc("provisional_tasks_total", outcome="held_back")
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
            # its deadline passes and it becomes a task of its own (but one
            # right under where a provisional task hangs joins that task).
            if sid in forced or buf.ancestry(sid) == "root":
                del buf.held[sid]
                node = buf.spans[sid]
                above = buf.spans.get(node.parent_id) if node.parent_id is not None else None
                sub = self._take(trace_id, buf, sid)
                if sid in forced and above is not None and above.task is not None:
                    sub = sub._replace(task=above.task, nested=True)
                out.append(sub)
        if not buf.spans and buf.task is None:
            self._forget(trace_id)
        return out

    def _take(self, trace_id: str, buf: TraceBuffer, root_sid: str) -> Subtree:
        was = buf.size
        root, on_time, late, taken, task = buf.take_subtree(root_sid)
        self._bytes -= was - buf.size
        self._count -= taken
        return Subtree(trace_id, root, on_time, late, taken, task)

    def _taken(self, trace_id: str, buf: TraceBuffer, taken: int) -> None:
        self._count -= taken
        if not buf.spans and buf.task is None:
            self._forget(trace_id)

    def _sized(self, buf: TraceBuffer, delta: int) -> None:
        buf.size += delta
        self._bytes += delta

    def _forget(self, trace_id: str) -> None:
        """``trace_id``'s buffer goes (its spans already left, or are counted by the caller)."""
        if self._buffers.pop(trace_id, None) is not None:
            self._bytes -= TRACE_BYTES
        if self._plain:
            self._plain.pop(trace_id, None)

    def _evict(self, trace_id: str, buf: TraceBuffer) -> None:
        """``trace_id``'s buffer goes with every span still in it."""
        self._forget(trace_id)
        self._count -= len(buf.spans)
        self._bytes -= buf.size

    def _over(self) -> bool:
        return self._count > self._max or self._bytes > self._limits.max_bytes

    def _bound(self) -> None:
        """Whole traces go while over a bound: those that show nothing of an
        agent first, oldest touched first; then the others, oldest touched
        first, an open provisional task's last. Each counted once, by reason."""
        while self._plain and self._over():
            tid, _ = self._plain.popitem(last=False)
            buf = self._buffers.get(tid)
            if buf is None or shows_agent(buf):
                continue  # gone already, or it shows an agent now: the next pass's
            self._evict(tid, buf)
            self._stats.drop(
                "pending_plain_evicted",
                len(buf.spans),
                detail="too many spans or bytes waiting for their task root; these showed nothing of an agent",
            )
        pinned = 0
        while self._over() and self._buffers:
            tid, buf = self._buffers.popitem(last=False)
            if buf.task is not None and pinned < len(self._buffers):
                # An open provisional task's links: its later spans join it
                # through them. Kept (looked at again last) while others can go.
                self._buffers[tid] = buf
                pinned += 1
                continue
            reason = "pending_spans_evicted" if self._count > self._max else "pending_bytes_evicted"
            self._plain.pop(tid, None)
            self._count -= len(buf.spans)
            self._bytes -= buf.size + TRACE_BYTES
            self._stats.drop(
                reason,
                len(buf.spans),
                detail="too many spans or bytes waiting for their task root; raise the limit or route by trace id",
            )
