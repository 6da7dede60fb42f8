"""SpanvisorSpanProcessor: the in-process path, on the agent's TracerProvider.

``on_start`` and ``on_end`` are O(1): a dict lookup, the stamp write, and a
deque append. They never wait on I/O and never raise into the agent;
everything else happens on the pipeline's thread. An exception caught in a
hook is counted in ``processor_errors_total``.

A member span of a task (not its root) goes into the inbox in a compact form
(:func:`spanvisor.pipeline.handover.member_start` and ``compact_end``: a
tuple of its ids, times, name, status and attribute dict), not as the SDK's
span: so the SDK's objects for it (locks, attribute wrapper, event and link
lists) are freed when the span ends instead of surviving in the inbox into
the garbage collections the agent's thread runs. The root goes in as it is:
the tracker reads it live.

Work that outlives its task's root (a span ending after the root ended, or
starting under it afterwards) is handed over at its end like any member:
the tracker reads it under the late-span rule (``tracking/late.py``: a
``TaskCorrected`` when it changed the task's totals, as on the end-order
paths) and counts it in ``late_spans_total``. A span that starts after the
root ended is not handed over at its start (the task is closed); its end
carries the task's stamp.

A span that belongs to no task known at its start but carries a key
spanvisor reads, an event or an error (or whose trace already sent one) goes
to the tracker at its end, as on the exporter path: some instrumentations
(OpenLLMetry's and OpenInference's LangChain ones) set the keys that make a
span an agent span only after it starts, and its children must still reach
its task.

On start, the processor stamps every span of a task with ``agent.task.id``,
``agent.task.root_span_id`` and (when known) ``agent.id``, so spans exported
elsewhere, through a Collector to ``spanvisor serve``, can still be grouped
into their task. Only then: with ``SPANVISOR_STAMP_SPANS=auto`` (the
default) a task is stamped when, as its root starts, the TracerProvider has
a span processor other than this one (see :meth:`_exported_elsewhere`); a
span that leaves the process through nothing else needs no stamp, and an
agent without another exporter pays none. ``true`` forces stamping (spans
leaving some other way), ``false`` turns it off. The decision holds for the
whole task. The stamp is written in one locked write straight into the new
span's attribute dict (see :func:`spanvisor.otel.stamp.write_direct`: a tenth of the SDK's
validated write), else in one ``set_attributes`` call.

A root goes into the inbox with its attributes as it started
(:class:`spanvisor.pipeline.handover.StartedRoot`): an agent giving it more
attributes than the span's limit makes the SDK drop the oldest, its task's
identity first, before the pipeline reads it. A task span that ends with
attributes dropped gets that identity back (``_on_ending``, see
:func:`put_back`), so every exporter sends the task.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from spanvisor.config import Config
from spanvisor.otel.attach import PipelineOwner
from spanvisor.otel.stamp import Stamp, put_back, stamp_for, stamp_mode, with_stamp, write_direct
from spanvisor.pipeline.handover import StartedRoot, compact_end
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import Sink
from spanvisor.spans import conventions as cv

log = logging.getLogger("spanvisor.processor")

MAX_OPEN_SPANS = 1_000_000
# Roots remembered after they end, so a span started under one afterwards is
# known as late work of its task rather than taken for an unrelated span.
MAX_ENDED_ROOTS = 10_000
_STAMP_KEYS = frozenset({cv.TASK_ROOT, cv.TASK_ID, cv.AGENT_ID, cv.TASK_NAME})


def _dropped(span: Any) -> int:
    """The SDK's count of the span's dropped attributes (its own field: the
    public property checks the type first)."""
    return int(getattr(span._attributes, "dropped", 0))


def _has_results(attrs: Any) -> bool:
    return any(k.startswith(cv.RESULT_PREFIX) for k in attrs)


def _attrs_now(span: Span) -> dict[str, Any]:
    attrs = span._attributes
    if type(attrs) is BoundedAttributes and type(attrs._dict) is dict:
        return dict(attrs._dict)
    return dict(span.attributes or {})


def _stamp_for_root(span: Span, attrs: Any) -> Stamp:
    ctx = span.get_span_context()
    return Stamp(stamp_for(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), attrs), ctx.span_id)


class SpanvisorSpanProcessor(PipelineOwner, SpanProcessor):
    """Add to a TracerProvider: ``provider.add_span_processor(SpanvisorSpanProcessor())``.

    ``sinks``: sink instances; without them, sinks are built from config.
    """

    def __init__(
        self,
        sinks: Sequence[Sink] | None = None,
        *,
        config: Config | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        PipelineOwner.__init__(self, "processor", sinks, config, pipeline)
        self._open: dict[int, Stamp] = {}
        # Ended roots, oldest first, bounded. OrderedDict: popitem is one C
        # call, safe when several agent threads end roots at once.
        self._ended: OrderedDict[int, Stamp] = OrderedDict()
        # Traces whose spans go to the tracker in end order (see on_end).
        self._end_order: OrderedDict[int, None] = OrderedDict()
        # Stamps serve spans exported elsewhere (a Collector to `spanvisor
        # serve`): "auto" stamps a task when another processor can send its
        # spans out, "on" always, "off" never.
        self._stamp_mode = stamp_mode(self.pipeline.config.get("stamp_spans", "auto"))
        # The provider's processors last looked at, and whether any is another's.
        self._seen: tuple[Any, bool] | None = None
        # Bound once: the hooks run per span on the agent's thread.
        self._submit_start = self.pipeline.submit_start
        self._submit_end = self.pipeline.submit_end
        # The usual span's hand-over inlined: a bounded append to the inbox's
        # deque (``limit`` is 0 once it is closed; the slow path counts drops).
        self._inbox = self.pipeline._inbox
        self._items = self._inbox._items
        self._append = self._items.append
        # The SDK calls every processor's ``_on_ending`` for every span. Until
        # a task is stamped or another processor reads its spans nothing needs
        # putting back there (a root's identity goes back in on_end): a
        # C-level function that ignores its argument costs a third of a
        # Python no-op. Swapped for _put_back_dropped at such a task's root.
        self._on_ending = id  # type: ignore[method-assign,assignment]
        self._putting_back = False

    @property
    def _errors(self) -> int:
        """Exceptions caught in the hooks so far (``processor_errors_total``)."""
        return int(self.pipeline.stats.value("processor_errors_total"))

    def _count(self, name: str) -> None:
        """A counter bump from a hook, off the hot path; never raises."""
        try:
            self.pipeline.stats.inc(name)
        except Exception:
            pass

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            parent = span._parent  # the property's own field: a call less per span
            if parent is not None:
                stamp = self._open.get(parent.span_id)
                if stamp is not None and not stamp.ended:
                    # A member of an open task, the usual span: its id
                    # remembered, the stamp written when the task is stamped,
                    # and the span itself appended to the inbox (bounded; the
                    # pipeline reads its ids). Anything full: the slow path.
                    opened, inbox = self._open, self._inbox
                    if len(opened) < MAX_OPEN_SPANS and len(self._items) < inbox.limit:
                        if stamp.stamped:
                            self._write_stamp(span, stamp)
                        opened[span._context.span_id] = stamp  # type: ignore[union-attr]
                        self._append(("start", span))
                        return
            self._start(span, parent)
        except Exception:  # never into the agent
            self._count("processor_errors_total")

    def _start(self, span: Span, parent: Any) -> None:
        """:meth:`on_start` of anything but a member of an open task with room
        for it: a root, late work, an unrelated span, or a full map or inbox."""
        stamp = self._open.get(parent.span_id) if parent is not None else None
        if stamp is None:
            attrs = span.attributes
            if not attrs or not cv.is_root_candidate(attrs):
                if parent is None or not self._ended:
                    return
                stamp = self._ended.get(parent.span_id)
                if stamp is None:
                    return  # the usual unrelated span
            else:
                stamp = _stamp_for_root(span, attrs)
                others = self._others(span)
                stamp.stamped = others if self._stamp_mode == "auto" else self._stamp_mode == "on"
                if others or stamp.stamped:
                    # Another processor reads this task's spans (or they carry
                    # the stamp): a span whose limit drops its identity gets it
                    # back before any processor's on_end reads it.
                    self._on_ending = self._put_back_dropped  # type: ignore[method-assign]
                    self._putting_back = True
                parent = None  # the task's root: the tracker keeps it to read it live
        opened = self._open
        if len(opened) >= MAX_OPEN_SPANS:
            # Spans that never end would otherwise grow this map forever.
            self.pipeline.stats.inbox_drop()
            return
        if stamp.stamped:
            self._write_stamp(span, stamp)
        if stamp.ended:
            # Its task's root has ended: late work, handed over at its
            # end only (the tracker has closed the task).
            opened[span._context.span_id] = stamp.late()  # type: ignore[union-attr]
            return
        opened[span._context.span_id] = stamp  # type: ignore[union-attr]
        if parent is None:
            # The root, read live with the identity it starts with: one
            # C-level copy of at most the limit's worth of keys, roots only.
            stamp.root_attrs = _attrs_now(span)
            self._submit_start(StartedRoot(span, stamp.root_attrs))
        else:
            self._submit_start(span)  # a member, the inbox full: counted there

    def _others(self, span: Span) -> bool:
        """Whether the provider that made ``span`` runs a span processor
        other than this one (its ``_span_processors``: a BatchSpanProcessor
        with an exporter, say). Any other processor counts (it may send spans
        out); a provider of another shape counts as having one. Looked at
        once per task root, cached per processor tuple (the SDK makes a new
        one when a processor is added)."""
        try:
            procs = span._span_processor._span_processors  # type: ignore[attr-defined]
        except AttributeError:
            return True
        seen = self._seen
        if seen is None or seen[0] is not procs:
            seen = self._seen = (procs, type(procs) is not tuple or any(p is not self for p in procs))
        return seen[1]

    @staticmethod
    def _write_stamp(span: Span, stamp: Stamp) -> None:
        if write_direct(span, stamp):
            return
        current = span.attributes
        # One pass over the span's few keys and one locked write: a
        # ``key in attributes`` miss costs an exception inside the SDK.
        present = [k for k in current if k in _STAMP_KEYS] if current else ()
        span.set_attributes({k: v for k, v in stamp.attrs.items() if k not in present} if present else stamp.attrs)

    def _put_back_dropped(self, span: Span) -> None:
        """The SDK's ``_on_ending`` hook (between a span's end and every
        processor's ``on_end``, SDK 1.40+), once a task's spans are stamped
        or another processor reads them: a task span whose limit dropped
        attributes gets its task's identity back (:func:`put_back`). Until
        then ``_on_ending`` is a C-level no-op (see ``__init__``)."""
        try:
            if span._attributes.dropped:  # type: ignore[union-attr]
                ctx = span._context
                stamp = self._open.get(ctx.span_id)  # type: ignore[union-attr]
                # A member of an unstamped task never had the stamp: nothing
                # of its own may make room for it.
                if stamp is not None and (stamp.stamped or ctx.span_id == stamp.root_id):  # type: ignore[union-attr]
                    put_back(span, stamp, ctx.span_id)  # type: ignore[union-attr]
        except Exception:
            self._count("processor_errors_total")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            ctx = span._context
            if ctx is not None:
                sid = ctx.span_id
                stamp = self._open.pop(sid, None)
                if (
                    stamp is not None
                    and not stamp.ended
                    and sid != stamp.root_id
                    and len(self._items) < self._inbox.limit
                ):
                    # A member of an open task, the usual span: the span as it
                    # is, one bounded append (see the module's docstring).
                    self._append(("end", span))
                    return
                self._end(span, ctx, stamp)
        except Exception:
            self._count("processor_errors_total")

    def _end(self, span: ReadableSpan, ctx: Any, stamp: Stamp | None) -> None:
        """:meth:`on_end` of anything but a member of an open task with room for it."""
        if stamp is None:
            attrs = span.attributes
            if attrs and (cv.is_root_candidate(attrs) or (_dropped(span) and _has_results(attrs))):
                # It became an agent or task span only through attributes
                # set after it started, or its limit dropped what named
                # it (its results still say it is a task root): the
                # tracker takes it from its end, as the end-order paths
                # do (a few dict lookups per unrelated span end).
                self._submit_end(span)
            elif span.parent is not None and (
                ctx.trace_id in self._end_order
                or (attrs and cv.has_known_key(attrs))
                or span.events
                or not span.status.is_ok
            ):
                # A span of no task known at its start, yet one that can
                # tell spanvisor something: its task root may become one
                # only at its end (LangGraph's instrumentations set the
                # keys late). The trace then goes over in end order, as on
                # the exporter path, and the tracker's buffer groups it.
                # (A trace's own root that is no task joins none: it
                # stays here, like a bare model call outside any agent.)
                if ctx.trace_id not in self._end_order:
                    self._end_order[ctx.trace_id] = None
                    if len(self._end_order) > MAX_ENDED_ROOTS:
                        self._end_order.popitem(last=False)
                self._submit_end(span)
            return
        if stamp.ended:
            # Work that outlived its task's root: the tracker reads it as
            # late (the late-span rule, tracking/late.py) and counts it.
            # One that started after the root ended was never handed over:
            # its stamp names its task, written here if not on the span.
            if stamp.started_late and not stamp.stamped:
                self._submit_end(with_stamp(compact_end(span), stamp))
                return
        elif stamp.root_id == ctx.span_id:
            if not self._putting_back and _dropped(span):
                # No other processor reads this root (else _on_ending did
                # this before any on_end): its identity back for the tracker.
                put_back(span, stamp, ctx.span_id)
            stamp.ended = True
            self._ended[ctx.span_id] = stamp
            if len(self._ended) > MAX_ENDED_ROOTS:
                self._ended.popitem(last=False)
        self._submit_end(span)  # the inbox full: counted there
