"""Which task a span belongs to, as the processor's hooks see spans start and end.

:class:`spanvisor.otel.processor.SpanvisorSpanProcessor` runs this on the
agent's thread once a task is stamped or another processor reads its spans,
and on the pipeline's thread otherwise (replaying the hooks in the order they
ran, on spans handed over as they are): the same decisions either way, each
thread with its own :class:`Tasks`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span

from spanvisor.otel.stamp import Stamp, stamp_for, with_stamp, write_stamp
from spanvisor.pipeline.handover import StartedRoot, compact_end
from spanvisor.spans import conventions as cv

MAX_OPEN_SPANS = 1_000_000
# Roots remembered after they end, so a span started under one afterwards is
# known as late work of its task rather than taken for an unrelated span.
MAX_ENDED_ROOTS = 10_000
# Every key ``cv.is_root_candidate`` reads: a span carrying none of them is no
# root (one C-level pass over its few keys before the full test).
ROOT_KEYS = frozenset({cv.TASK_NAME, cv.TASK_ID, cv.GEN_AI_OPERATION, cv.OI_KIND, cv.TL_KIND})


# What :func:`start` returns for a span of no task it knows.
UNKNOWN = object()


class Tasks:
    """The open tasks' spans as one thread sees them (see the module's docstring)."""

    __slots__ = ("end_order", "ended", "open", "unnamed")

    def __init__(self) -> None:
        self.open: dict[int, Stamp] = {}
        # Trace roots that named no task as they started, still open, oldest
        # first, bounded: a child's start looks at one again (see start).
        self.unnamed: OrderedDict[int, Span] = OrderedDict()
        # Ended roots, oldest first, bounded. OrderedDict: popitem is one C
        # call, safe when several agent threads end roots at once.
        self.ended: OrderedDict[int, Stamp] = OrderedDict()
        # Traces whose spans go to the tracker in end order (see :func:`end`).
        self.end_order: OrderedDict[int, None] = OrderedDict()


def _dropped(span: Any) -> int:
    """The SDK's count of the span's dropped attributes (its own field: the
    public property checks the type first)."""
    return int(getattr(span._attributes, "dropped", 0))


def _has_results(attrs: Any) -> bool:
    return any(k.startswith(cv.RESULT_PREFIX) for k in attrs)


def attrs_now(span: Span) -> dict[str, Any]:
    attrs = span._attributes
    if type(attrs) is BoundedAttributes and type(attrs._dict) is dict:
        return dict(attrs._dict)
    return dict(span.attributes or {})


def attrs_of(span: Any) -> Any:
    """The span's attributes to read, not copied: the SDK's own dict when it
    is the usual shape. The public view reads through ``BoundedAttributes``,
    whose ``get`` and ``in`` raise and catch a ``KeyError`` inside the SDK
    for every key it lacks: the few lookups that tell a task root cost about
    10 µs that way, a root's start stamping."""
    attrs = span._attributes
    if type(attrs) is BoundedAttributes:
        d = attrs._dict
        if type(d) is dict:
            return d
    return span.attributes


def _stamp_for_root(span: Span, attrs: Any) -> Stamp:
    ctx = span.get_span_context()
    trace_id, span_id = ctx[0], ctx[1]  # a SpanContext is a tuple: its properties are Python calls
    stamp = Stamp(stamp_for(f"{trace_id:032x}", f"{span_id:016x}", attrs), span_id)
    stamp.source = getattr(span, "_span_processor", None)
    return stamp


def start(
    tasks: Tasks,
    span: Span,
    parent: Any,
    attrs: Any,
    stamps: Callable[[Span], bool],
    drop: Callable[[], None],
    root: Any = None,
) -> Any:
    """What a span's start hands the tracker (None: nothing; ``UNKNOWN``:
    nothing, and the span is in no task ``tasks`` knows). ``attrs``: its
    attributes as it started (on the pipeline's thread, a possible root's
    only, whose ``root`` is a :class:`StartedRoot`); ``stamps``: whether
    the task a root starts gets stamped; ``drop``: counts a span not taken."""
    stamp = tasks.open.get(parent.span_id) if parent is not None else None
    if stamp is None:
        if not attrs or not cv.is_root_candidate(attrs):
            if parent is None:
                _unnamed(tasks, span)
                return UNKNOWN
            if tasks.unnamed and (late := _named_late(tasks, span, parent, stamps)) is not None:
                return late
            if not tasks.ended:
                return UNKNOWN
            stamp = tasks.ended.get(parent.span_id)
            if stamp is None:
                return UNKNOWN  # the usual unrelated span
        else:
            stamp = _stamp_for_root(span, attrs)
            stamp.stamped = stamps(span)
            parent = None  # the task's root: the tracker keeps it to read it live
    opened = tasks.open
    if len(opened) >= MAX_OPEN_SPANS:
        # Spans that never end would otherwise grow this map forever.
        drop()
        return None
    if stamp.stamped:
        write_stamp(span, stamp)
    if stamp.ended:
        # Its task's root has ended: late work, handed over at its
        # end only (the tracker has closed the task).
        opened[span._context.span_id] = stamp.late()  # type: ignore[union-attr]
        return None
    opened[span._context.span_id] = stamp  # type: ignore[union-attr]
    if parent is None:
        # The root, read live with the identity it starts with: one
        # C-level copy of at most the limit's worth of keys, roots only.
        if type(root) is StartedRoot:
            stamp.root_attrs = root.kept
            return root
        stamp.root_attrs = attrs_now(span)
        return StartedRoot(span, stamp.root_attrs)
    return span  # a member (the inbox was full on the fast path: counted again)


def _unnamed(tasks: Tasks, span: Span) -> None:
    ctx = span._context
    if ctx is not None:
        tasks.unnamed[ctx.span_id] = span
        if len(tasks.unnamed) > MAX_ENDED_ROOTS:
            tasks.unnamed.popitem(last=False)


def _named_late(tasks: Tasks, span: Span, parent: Any, stamps: Callable[[Span], bool]) -> StartedRoot | None:
    """A child's start under a trace root that named no task as it started
    but does now: frameworks that set their keys just after starting the
    span (Strands, the Microsoft Agent Framework). The root's task opens
    here, live, with its attributes as they are now (the caller then starts
    the child again, a member now); None otherwise. Not for a trace already going over in end order
    (its spans are the tracker's buffer's)."""
    root = tasks.unnamed.get(parent.span_id)
    if root is None or root._context is None or root._context.trace_id in tasks.end_order:
        return None
    attrs = attrs_of(root)
    if not attrs or not cv.is_root_candidate(attrs):
        return None
    del tasks.unnamed[parent.span_id]
    stamp = _stamp_for_root(root, attrs)
    stamp.stamped = stamps(root)
    if len(tasks.open) >= MAX_OPEN_SPANS:
        return None
    if stamp.stamped:
        write_stamp(root, stamp)
    stamp.root_attrs = attrs_now(root)
    tasks.open[parent.span_id] = stamp
    return StartedRoot(root, stamp.root_attrs)


def end(tasks: Tasks, span: ReadableSpan, ctx: Any, stamp: Stamp | None, restore: Callable[..., Any] | None) -> Any:
    """What a span's end hands the tracker (None: nothing). ``restore``: what
    the tracker reads of a root whose limit dropped attributes, its identity
    back (the hooks put it back before any processor's ``on_end`` when they
    classify; then None)."""
    if stamp is None:
        if span.parent is None and tasks.unnamed:
            tasks.unnamed.pop(ctx.span_id, None)
        attrs = attrs_of(span)
        if attrs and (cv.is_root_candidate(attrs) or (_dropped(span) and _has_results(attrs))):
            # It became an agent or task span only through attributes
            # set after it started, or its limit dropped what named
            # it (its results still say it is a task root): the
            # tracker takes it from its end, as the end-order paths
            # do (a few dict lookups per unrelated span end).
            return span
        if ctx.trace_id in tasks.end_order or (
            span.parent is not None and ((attrs and cv.has_known_key(attrs)) or span.events or not span.status.is_ok)
        ):
            # A span of no task known at its start, yet one that can
            # tell spanvisor something: its task root may become one
            # only at its end (LangGraph's instrumentations set the
            # keys late). The trace then goes over in end order, as on
            # the exporter path, and the tracker's buffer groups it;
            # its own root too, whose subtree may make it a task
            # (LlamaIndex's top-level CHAIN). A trace's root that is
            # no task and whose trace sent nothing over stays here,
            # like a bare model call outside any agent.
            if ctx.trace_id not in tasks.end_order:
                tasks.end_order[ctx.trace_id] = None
                if len(tasks.end_order) > MAX_ENDED_ROOTS:
                    tasks.end_order.popitem(last=False)
            return span
        return None
    if stamp.ended:
        # Work that outlived its task's root: the tracker reads it as
        # late (the late-span rule, tracking/late.py) and counts it.
        # One that started after the root ended was never handed over:
        # its stamp names its task, written here if not on the span.
        if stamp.started_late and not stamp.stamped:
            return with_stamp(compact_end(span), stamp)
    elif stamp.root_id == ctx.span_id:
        stamp.ended = True
        stamp.direct = None  # members starting now are late (on_start's first check)
        tasks.ended[ctx.span_id] = stamp
        if len(tasks.ended) > MAX_ENDED_ROOTS:
            tasks.ended.popitem(last=False)
        if restore is not None and _dropped(span):
            return restore(span, stamp, ctx.span_id)  # its identity back before the tracker reads it
    return span
