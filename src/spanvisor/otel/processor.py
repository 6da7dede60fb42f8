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
# Every key ``cv.is_root_candidate`` reads: a span carrying none of them is no
# root (one C-level pass over its few keys before the full test).
_ROOT_KEYS = frozenset({cv.TASK_NAME, cv.TASK_ID, cv.GEN_AI_OPERATION, cv.OI_KIND, cv.TL_KIND})


# What :meth:`SpanvisorSpanProcessor._start` returns for a span of no task it knows.
_UNKNOWN = object()


class _Tasks:
    """The open tasks' spans as one thread sees them (see the module's docstring)."""

    __slots__ = ("end_order", "ended", "open")

    def __init__(self) -> None:
        self.open: dict[int, Stamp] = {}
        # Ended roots, oldest first, bounded. OrderedDict: popitem is one C
        # call, safe when several agent threads end roots at once.
        self.ended: OrderedDict[int, Stamp] = OrderedDict()
        # Traces whose spans go to the tracker in end order (see _end).
        self.end_order: OrderedDict[int, None] = OrderedDict()


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
        # Tasks the hooks classify on the agent's thread (once stamping), and
        # those the pipeline's thread classifies from the spans handed over as
        # they are (until then).
        self._mine = _Tasks()
        self._theirs = _Tasks()
        # Stamps serve spans exported elsewhere (a Collector to `spanvisor
        # serve`): "auto" stamps a task when another processor can send its
        # spans out, "on" always, "off" never.
        self._stamp_mode = stamp_mode(self.pipeline.config.get("stamp_spans", "auto"))
        # The provider's processors last looked at, and whether any is another's.
        self._seen: tuple[Any, bool] | None = None
        # Bound once: the hooks run per span on the agent's thread.
        self._submit_start = self.pipeline.submit_start
        self._submit_end = self.pipeline.submit_end
        # The hand-over inlined: one bounded append to the inbox's deque
        # (its ``limit`` is 0 once closed), a drop counted when full.
        self._inbox = self.pipeline._inbox
        self._items = self._inbox._items
        self._append = self._items.append
        self._drop = self.pipeline.stats.inbox_drop
        self._replay_start_ = self._replay_start
        self._replay_end_ = self._replay_end
        # The SDK calls every processor's ``_on_ending`` for every span. Until
        # a task is stamped or another processor reads its spans nothing needs
        # putting back there (the pipeline puts a root's identity back): a
        # C-level function that ignores its argument costs a third of a
        # Python no-op. Swapped for _put_back_dropped when classifying starts.
        self._on_ending = id  # type: ignore[method-assign,assignment]

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

    # -- the agent's thread ----------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """The default: nothing to write on the span, so nothing to look up.
        A possible task root's attributes are copied as it starts (see
        StartedRoot); every span goes over as it is, one bounded append, and
        the pipeline's thread tells which task it belongs to."""
        try:
            try:
                d = span._attributes._dict  # type: ignore[union-attr]
            except AttributeError:  # not the SDK's usual insides
                d = span.attributes
            if d and not _ROOT_KEYS.isdisjoint(d) and cv.is_root_candidate(d):
                if self._starts_classifying(span):
                    self._on_start_classifying(span)
                else:
                    self._hand_over(StartedRoot(span, _attrs_now(span)), self._replay_start_)
            elif len(self._items) < self._inbox.limit:
                self._append(("raw", self._replay_start_, span))
            else:
                self._drop()
        except Exception:  # never into the agent
            self._count("processor_errors_total")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if len(self._items) < self._inbox.limit:
                self._append(("raw", self._replay_end_, span))
            else:
                self._drop()
        except Exception:
            self._count("processor_errors_total")

    def _on_start_classifying(self, span: Span, parent_context: Context | None = None) -> None:
        """``on_start`` once the hooks classify (see :meth:`_starts_classifying`)."""
        try:
            parent = span._parent  # the property's own field: a call less per span
            if parent is not None:
                stamp = self._mine.open.get(parent.span_id)
                if stamp is not None and not stamp.ended:
                    # A member of an open task, the usual span: its id
                    # remembered, its stamp written, the span itself appended.
                    opened = self._mine.open
                    if len(opened) < MAX_OPEN_SPANS and len(self._items) < self._inbox.limit:
                        if stamp.stamped:
                            write_direct(span, stamp) or self._write_stamp(span, stamp)
                        opened[span._context.span_id] = stamp  # type: ignore[union-attr]
                        self._append(("start", span))
                        return
            got = self._start(self._mine, span, parent, span.attributes)
            if got is _UNKNOWN:
                # No task known here: one the pipeline's thread classifies
                # (begun before classifying started), or none at all.
                self._hand_over(span, self._replay_start_)
            elif got is not None:
                self._submit_start(got)
        except Exception:  # never into the agent
            self._count("processor_errors_total")

    def _on_end_classifying(self, span: ReadableSpan) -> None:
        """``on_end`` once the hooks classify."""
        try:
            ctx = span._context
            if ctx is None:
                return
            sid = ctx.span_id
            stamp = self._mine.open.pop(sid, None)
            if stamp is None:
                self._hand_over(span, self._replay_end_)  # as in _on_start_classifying
                return
            if not stamp.ended and sid != stamp.root_id and len(self._items) < self._inbox.limit:
                self._append(("end", span))  # a member of an open task, the usual span
                return
            got = self._end(self._mine, span, ctx, stamp)
            if got is not None:
                self._submit_end(got)
        except Exception:
            self._count("processor_errors_total")

    def _hand_over(self, span: Any, replay: Any) -> None:
        if len(self._items) < self._inbox.limit:
            self._append(("raw", replay, span))
        else:
            self._drop()

    def _starts_classifying(self, span: Span) -> bool:
        """At a possible task root: whether its task's spans must be known on
        this thread (stamped, or read by another processor, whose on_end must
        see an identity put back); if so the hooks classify from now on."""
        if self._stamp_mode == "on" or self._others(span):
            # Instance attributes, for good: the SDK calls these per span, and
            # a branch in every call costs what the swap saves.
            self._on_ending = self._put_back_dropped  # type: ignore[method-assign]
            self.on_end = self._on_end_classifying  # type: ignore[method-assign]
            self.on_start = self._on_start_classifying  # type: ignore[method-assign]
            return True
        return False

    def _others(self, span: Span) -> bool:
        """Whether the provider that made ``span`` runs a span processor
        other than this one (its ``_span_processors``: a BatchSpanProcessor
        with an exporter, say). Any other processor counts (it may send spans
        out); a provider of another shape counts as having one. Cached per
        processor tuple (the SDK makes a new one when a processor is added)."""
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
        """The stamp through the SDK's public call (when :func:`write_direct` cannot)."""
        current = span.attributes
        # One pass over the span's few keys and one locked write: a
        # ``key in attributes`` miss costs an exception inside the SDK.
        present = [k for k in current if k in _STAMP_KEYS] if current else ()
        span.set_attributes({k: v for k, v in stamp.attrs.items() if k not in present} if present else stamp.attrs)

    def _put_back_dropped(self, span: Span) -> None:
        """The SDK's ``_on_ending`` hook (between a span's end and every
        processor's ``on_end``, SDK 1.40+) once the hooks classify: a task
        span whose limit dropped attributes gets its task's identity back
        (:func:`put_back`) before any processor reads it."""
        try:
            if span._attributes.dropped:  # type: ignore[union-attr]
                ctx = span._context
                stamp = self._mine.open.get(ctx.span_id)  # type: ignore[union-attr]
                # A member of an unstamped task never had the stamp: nothing
                # of its own may make room for it.
                if stamp is not None and (stamp.stamped or ctx.span_id == stamp.root_id):  # type: ignore[union-attr]
                    put_back(span, stamp, ctx.span_id)  # type: ignore[union-attr]
        except Exception:
            self._count("processor_errors_total")

    # -- the pipeline's thread: spans handed over as they are --------------------

    def _replay_start(self, got: Any) -> tuple[str, Any] | None:
        """A span's start as the hooks would have classified it, in the order
        they ran: a :class:`StartedRoot` was a possible root as it started."""
        try:
            if type(got) is StartedRoot:
                span, attrs = got.span, got.kept
            else:
                span, attrs = got, None
            out = self._start(self._theirs, span, span._parent, attrs, got)
        except Exception:  # a hook's error, caught where the hook's work now runs
            self._count("processor_errors_total")
            return None
        return ("start", out) if out is not None and out is not _UNKNOWN else None

    def _replay_end(self, span: Any) -> tuple[str, Any] | None:
        try:
            ctx = span._context
            if ctx is None:
                return None
            out = self._end(self._theirs, span, ctx, self._theirs.open.pop(ctx.span_id, None))
        except Exception:
            self._count("processor_errors_total")
            return None
        return ("end", out) if out is not None else None

    # -- either thread: the classification ------------------------------------------

    def _start(self, tasks: _Tasks, span: Span, parent: Any, attrs: Any, root: Any = None) -> Any:
        """What a span's start hands the tracker (None: nothing; ``_UNKNOWN``:
        nothing, and the span is in no task known to ``tasks``): anything but
        a member of an open task with room for it. ``attrs``: its attributes
        as it started (on the pipeline's thread, a possible root's only)."""
        stamp = tasks.open.get(parent.span_id) if parent is not None else None
        if stamp is None:
            if not attrs or not cv.is_root_candidate(attrs):
                if parent is None or not tasks.ended:
                    return _UNKNOWN
                stamp = tasks.ended.get(parent.span_id)
                if stamp is None:
                    return _UNKNOWN  # the usual unrelated span
            else:
                stamp = _stamp_for_root(span, attrs)
                mode = self._stamp_mode
                stamp.stamped = tasks is self._mine and (mode == "on" or (mode == "auto" and self._others(span)))
                parent = None  # the task's root: the tracker keeps it to read it live
        opened = tasks.open
        if len(opened) >= MAX_OPEN_SPANS:
            # Spans that never end would otherwise grow this map forever.
            self.pipeline.stats.inbox_drop()
            return None
        if stamp.stamped and not write_direct(span, stamp):
            self._write_stamp(span, stamp)
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
            stamp.root_attrs = _attrs_now(span)
            return StartedRoot(span, stamp.root_attrs)
        return span  # a member (the inbox was full on the fast path: counted again)

    def _end(self, tasks: _Tasks, span: ReadableSpan, ctx: Any, stamp: Stamp | None) -> Any:
        """What a span's end hands the tracker (None: nothing)."""
        if stamp is None:
            attrs = span.attributes
            if attrs and (cv.is_root_candidate(attrs) or (_dropped(span) and _has_results(attrs))):
                # It became an agent or task span only through attributes
                # set after it started, or its limit dropped what named
                # it (its results still say it is a task root): the
                # tracker takes it from its end, as the end-order paths
                # do (a few dict lookups per unrelated span end).
                return span
            if span.parent is not None and (
                ctx.trace_id in tasks.end_order
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
            if tasks is self._theirs and _dropped(span):
                # No other processor read this root (else the hooks would
                # classify): its identity back before the tracker reads it.
                put_back(span, stamp, ctx.span_id)
            stamp.ended = True
            tasks.ended[ctx.span_id] = stamp
            if len(tasks.ended) > MAX_ENDED_ROOTS:
                tasks.ended.popitem(last=False)
        return span
