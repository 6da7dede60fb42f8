"""The processor's other half: spans handed over as they are, on the pipeline's thread.

:class:`spanvisor.otel.processor.SpanvisorSpanProcessor` appends spans to
the inbox as they are (see its docstring); the inbox turns each into an
entry with :meth:`Replay._replay`, which replays the hooks' classification
(:mod:`spanvisor.otel.classify`) in the order they ran, with a state of its
own. Also here: the log processor's hint (``task_traces``) kept as task
roots start and end, the ends a full inbox refused, and a root's identity
put back before the tracker reads it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, cast

from opentelemetry.sdk.trace import ReadableSpan, Span

from spanvisor.otel.classify import UNKNOWN, Tasks, end, start
from spanvisor.otel.stamp import put_back, restored
from spanvisor.pipeline.handover import StartedRoot

# Open task roots' traces the log processor can look up (task_traces).
MAX_TASK_TRACES = 10_000

# Whether a bare item of a type is an end (see Replay._replay), per type:
# one dict lookup a start, where a subclass check through the SDK's ABC
# metaclass costs several times that. A handful of types ever.
_IS_END: dict[type, bool] = {StartedRoot: False}


class Replay:
    """The pipeline-thread half of the processor (a base class: the hooks
    and this share the processor's fields)."""

    task_traces: OrderedDict[int, int]
    _theirs: Tasks
    _trace_roots: OrderedDict[int, list[int]]
    _lost: deque[Any]
    _items: deque[Any]

    _drop: Callable[[], None]

    def _count(self, name: str) -> None:
        """A counter bump (the processor's)."""

    def _task_trace(self, span: Span) -> None:
        """Its trace has an open task root now (for the log processor). The
        first root of a trace keeps it (a nested one does not take it over);
        the oldest goes past the bound (a root whose end never came)."""
        try:
            ctx = span._context
            if ctx is not None:
                traces = self.task_traces
                traces.setdefault(ctx.trace_id, ctx.span_id)
                if len(traces) > MAX_TASK_TRACES:
                    traces.popitem(last=False)
        except Exception:  # the log tails' hint only; the span went over already
            self._count("processor_errors_total")

    def _replay(self, item: Any) -> tuple[Any, ...] | None:
        """A bare item of this processor's as an inbox entry (None: nothing
        to track). The contract, since ``on_end`` is the inbox's bare append
        (no frame to tag the item in): a start is a live ``Span`` (or a
        :class:`StartedRoot`), an end a ``ReadableSpan`` that is no ``Span``.
        The SDK's ``Span.end`` hands ``on_end`` a fresh ``ReadableSpan``
        (``Span._readable_span``), the exact class: one type check tells it.
        Any other ``ReadableSpan`` that is no ``Span`` (a wrapper's subclass)
        is an end too, told off that path. A live ``Span`` handed to
        ``on_end`` (no SDK does: tests pin it) would read as a start."""
        t = type(item)
        if t is ReadableSpan:
            return self._replay_end(item)
        if t is tuple:
            return cast("tuple[Any, ...]", item)  # a classified entry another processor's tag wrapped
        is_end = _IS_END.get(t)
        if is_end is None:
            is_end = _IS_END[t] = issubclass(t, ReadableSpan) and not issubclass(t, Span)
        return self._replay_end(item) if is_end else self._replay_start(item)

    def _replay_start(self, got: Any) -> tuple[str, Any] | None:
        """A span's start as the hooks would have classified it, in the order
        they ran: a :class:`StartedRoot` was a possible root as it started."""
        try:
            if type(got) is StartedRoot:
                span, attrs = got.span, got.kept
            else:
                span, attrs = got, None
            out = start(self._theirs, span, span._parent, attrs, _never, self._drop, got)
            if type(out) is StartedRoot:
                self._root_started(out.span._context)
                if out.span is not span:  # its parent, named late (classify.start): this start again, a member now
                    self._items.appendleft(span)
            if self._lost and not self._items:
                self._settle_lost()
        except Exception:  # a hook's error, caught where the hook's work now runs
            self._count("processor_errors_total")
            return None
        return ("start", out) if out is not None and out is not UNKNOWN else None

    def _root_started(self, ctx: Any) -> None:
        """A task root, in the pipeline's classification: its trace keeps the
        log processor's hint while any task root of it is open."""
        roots = self._trace_roots.setdefault(ctx.trace_id, [])
        roots.append(ctx.span_id)
        self.task_traces.setdefault(ctx.trace_id, ctx.span_id)
        if len(self._trace_roots) > MAX_TASK_TRACES:
            self._trace_roots.popitem(last=False)

    def _root_ended(self, ctx: Any) -> None:
        """A task root's end, in the pipeline's classification: its trace
        loses the hint unless another task root of it is still open (two
        tasks side by side in one trace: the first to end must not take the
        other's records with it)."""
        tid = ctx.trace_id
        roots = self._trace_roots.get(tid)
        if roots is not None and ctx.span_id in roots:
            roots.remove(ctx.span_id)
        if roots:
            self.task_traces[tid] = roots[0]
            return
        self._trace_roots.pop(tid, None)
        if self.task_traces.get(tid) == ctx.span_id:
            self.task_traces.pop(tid, None)

    def _settle_lost(self) -> None:
        """Close in the classification the spans whose end was refused, once
        the inbox is empty: every start handed over before the refusal has
        been replayed by then (a span whose start was refused too is not
        open, and nothing is left of it)."""
        lost = self._lost
        while lost:
            span = lost.popleft()
            if span._context is not None:
                self._close(span)

    def _close(self, span: Any) -> None:
        ctx = span._context
        stamp = self._theirs.open.pop(ctx.span_id, None)
        self._hint_ended(ctx, stamp)
        if stamp is not None:
            end(self._theirs, span, ctx, stamp, None)  # what it returns was refused

    def _hint_ended(self, ctx: Any, stamp: Any) -> None:
        """A span's end, for the log processor's hint: a task root's, or that
        of a span the hooks hinted that never started a task here (its start
        refused by a full inbox): the hint goes with it, else it stayed until
        evicted."""
        if (stamp is not None and stamp.root_id == ctx.span_id) or self.task_traces.get(ctx.trace_id) == ctx.span_id:
            self._root_ended(ctx)

    def _restore(self, span: Any, stamp: Any, sid: int) -> Any:
        """What the tracker reads of a root whose limit dropped attributes
        (the pipeline's thread): its task's identity put back into the span
        itself when no processor but this one is on its provider now (the
        SDK only ever adds processors: none then read it as it ended), so
        every later reader agrees; else into a copy (:func:`restored`):
        another processor, added while the task ran, may be reading the
        span on its own thread, and a write beside its read could break its
        export (a dict changing size while it is iterated)."""
        source = stamp.source
        procs = getattr(source, "_span_processors", None)
        if type(procs) is tuple and all(p is self for p in procs):
            put_back(span, stamp, sid)
            return span
        return restored(span, stamp, sid)

    def _replay_end(self, span: Any) -> tuple[str, Any] | None:
        try:
            ctx = span._context
            if ctx is None:
                return None
            sid = ctx.span_id
            stamp = self._theirs.open.pop(sid, None)
            if (stamp is not None and stamp.root_id == sid) or self.task_traces.get(ctx.trace_id) == sid:
                self._root_ended(ctx)  # _hint_ended inlined: every span's end
            out = end(self._theirs, span, ctx, stamp, self._restore)
            if self._lost and not self._items:
                self._settle_lost()
        except Exception:
            self._count("processor_errors_total")
            return None
        return ("end", out) if out is not None else None


def _never(span: Span) -> bool:
    return False  # what the pipeline's thread classifies is never stamped
