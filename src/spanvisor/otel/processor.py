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
into their task. The stamp goes straight into the new span's attribute dict
(see :func:`_write_direct`: a tenth of the SDK's validated write).
``SPANVISOR_STAMP_SPANS=false`` turns stamping off.

A root goes into the inbox with its attributes as it started
(:class:`spanvisor.pipeline.handover.StartedRoot`): an agent giving it more
attributes than the span's limit makes the SDK drop the oldest, its task's
identity first, before the pipeline reads it. A task span that ends with
attributes dropped gets that identity back (``_on_ending``, see
:func:`_put_back`), so every exporter sends the task.
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
from spanvisor.pipeline.handover import StartedRoot, compact_end, member_start
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import Sink
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.tasktable import default_task_id

log = logging.getLogger("spanvisor.processor")

MAX_OPEN_SPANS = 1_000_000
# Roots remembered after they end, so a span started under one afterwards is
# known as late work of its task rather than taken for an unrelated span.
MAX_ENDED_ROOTS = 10_000
_STAMP_KEYS = frozenset({cv.TASK_ROOT, cv.TASK_ID, cv.AGENT_ID, cv.TASK_NAME})


class _Stamp:
    """One task as the processor sees it, shared by all its open spans.

    ``ended`` flips when the root ends (on the agent's thread that ends it).
    ``started_late`` marks the twin that spans starting after that share:
    they were never handed to the tracker.
    """

    __slots__ = ("_late", "attrs", "ended", "longest", "root_attrs", "root_id", "started_late")

    def __init__(self, attrs: dict[str, str], root_id: int, started_late: bool = False) -> None:
        self.attrs = attrs
        self.longest = max(map(len, attrs.values()), default=0)
        self.root_id = root_id
        self.ended = started_late
        self.started_late = started_late
        self._late: _Stamp | None = None
        # The root's attributes as it started, stamp included (see StartedRoot).
        self.root_attrs: dict[str, Any] = {}

    def late(self) -> _Stamp:
        if self._late is None:
            self._late = _Stamp(self.attrs, self.root_id, started_late=True)
        return self._late

    def lost(self, span_id: int) -> dict[str, Any]:
        """What the span should carry of its task's identity: the root all
        of it as it started, a member the stamp."""
        if span_id == self.root_id:
            kept = self.root_attrs
            return {k: kept[k] for k in cv.IDENTITY_KEYS if k in kept}
        return self.attrs


def stamp_for(trace_hex: str, root_hex: str, attrs: Any) -> dict[str, str]:
    """The stamp written on every span of the task whose root is described."""
    task_id = sz.name(attrs.get(cv.TASK_ID), cv.TASK_ID, []) or default_task_id(trace_hex, root_hex)
    stamp = {cv.TASK_ROOT: root_hex, cv.TASK_ID: task_id}
    # Sanitised exactly as the tracker reads it, so both ends agree on the id.
    agent_id = sz.name(cv.agent_id(attrs), cv.AGENT_ID, []) or sz.name(cv.agent_name(attrs), cv.AGENT_NAME, [])
    if agent_id is not None:
        stamp[cv.AGENT_ID] = agent_id
    # The task name stays on the root: each stamp key costs every span of
    # the task a validated attribute write on the agent's thread.
    return stamp


def _write_direct(span: Span, stamp: _Stamp) -> bool:
    """Write the stamp straight into the span's attribute dict; False when
    that is not certain to be what ``set_attributes`` would do (then it is
    used instead).

    ``set_attributes`` validates every value and takes two locks: about 6 µs
    a span here, most of the processor's cost on the agent's thread. The
    stamp's values are strings we made and checked, and ``on_start`` runs
    inside ``start_span``, before the agent holds the span: written under the
    attributes' own lock, within the span's attribute limits, the result is
    the same. This reads SDK internals (``BoundedAttributes._dict``), so any
    surprise in their shape falls back to the public call.
    """
    try:
        attrs = span._attributes
        if type(attrs) is not BoundedAttributes or attrs._immutable:
            return False
        d = attrs._dict
        if type(d) is not dict:
            return False
        new = stamp.attrs
        limit, width = attrs.maxlen, attrs.max_value_len
        if limit is not None and len(d) + len(new) > limit:
            return False  # the SDK would drop the oldest keys: let it
        if width is not None and stamp.longest > width:
            return False  # the SDK would cut the values: let it
        with attrs._lock:
            for k, v in new.items():
                d.setdefault(k, v)  # the agent's own value wins
        return True
    except Exception:
        return False


def _put_back(span: Any, stamp: _Stamp, span_id: int) -> None:
    """A span whose attribute limit dropped some of its attributes, as it
    ends: the identity of its task that went with them goes back.

    The SDK drops the oldest attributes first, and a task's name, agent and
    stamp are set first: a root given more results than the limit would
    reach a Collector and ``spanvisor serve`` as no task at all. Put back
    into the ended span's own dict (the public setter refuses an ended span)
    before any processor's ``on_end`` reads it, so every exporter sends it;
    within the limit, as the SDK would had they been set last: each takes
    the place of the oldest other attribute, counted in the span's dropped
    count like the SDK's own drops.
    """
    attrs = span._attributes
    if type(attrs) is not BoundedAttributes or not attrs.dropped:
        return
    d = attrs._dict
    if type(d) is not dict:
        return
    want = stamp.lost(span_id)
    limit = attrs.maxlen
    with attrs._lock:
        for k, v in want.items():
            if k in d:
                continue
            if limit is not None and len(d) >= limit:
                oldest = next((x for x in d if x not in want), None)
                if oldest is None:
                    return  # a limit smaller than the identity itself
                del d[oldest]
                attrs.dropped += 1
            d[k] = v


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


def _stamp_for_root(span: Span, attrs: Any) -> _Stamp:
    ctx = span.get_span_context()
    return _Stamp(stamp_for(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), attrs), ctx.span_id)


def _with_stamp(ended: Any, stamp: _Stamp) -> Any:
    """A :func:`compact_end` tuple with the stamp among its attributes (the
    span's own values win); anything else as it is."""
    if type(ended) is not tuple:
        return ended
    return (*ended[:5], {**stamp.attrs, **ended[5]}, *ended[6:])


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
        self._open: dict[int, _Stamp] = {}
        # Ended roots, oldest first, bounded. OrderedDict: popitem is one C
        # call, safe when several agent threads end roots at once.
        self._ended: OrderedDict[int, _Stamp] = OrderedDict()
        # Traces whose spans go to the tracker in end order (see on_end).
        self._end_order: OrderedDict[int, None] = OrderedDict()
        # Stamps serve spans exported elsewhere (a Collector to `spanvisor
        # serve`); an agent whose spans go nowhere else can turn them off.
        self._stamp = bool(self.pipeline.config.get("stamp_spans", True))

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
            parent = span.parent
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
                    parent = None  # the task's root: the tracker keeps it to read it live
            if len(self._open) >= MAX_OPEN_SPANS:
                # Spans that never end would otherwise grow this map forever.
                self.pipeline.stats.inbox_drop()
                return
            if self._stamp:
                self._write_stamp(span, stamp)
            if stamp.ended:
                # Its task's root has ended: late work, handed over at its
                # end only (the tracker has closed the task).
                self._open[span.get_span_context().span_id] = stamp.late()
                return
            self._open[span.get_span_context().span_id] = stamp
            if parent is not None and self._stamp:
                # A member: the tracker needs its ids, not the live span
                # (handover.member_start says why and what stays readable).
                self.pipeline.submit_start(member_start(span, parent))
            elif parent is None:
                # The root, read live with the identity it starts with: one
                # C-level copy of at most the limit's worth of keys, roots only.
                stamp.root_attrs = _attrs_now(span)
                self.pipeline.submit_start(StartedRoot(span, stamp.root_attrs))
            else:
                self.pipeline.submit_start(span)
        except Exception:  # never into the agent
            self._count("processor_errors_total")

    @staticmethod
    def _write_stamp(span: Span, stamp: _Stamp) -> None:
        if _write_direct(span, stamp):
            return
        current = span.attributes
        # One pass over the span's few keys and one locked write: a
        # ``key in attributes`` miss costs an exception inside the SDK.
        present = [k for k in current if k in _STAMP_KEYS] if current else ()
        span.set_attributes({k: v for k, v in stamp.attrs.items() if k not in present} if present else stamp.attrs)

    def _on_ending(self, span: Span) -> None:
        """The SDK's hook between a span's end and every processor's
        ``on_end`` (SDK 1.40+, the oldest supported): a getattr per span."""
        try:
            if getattr(span._attributes, "dropped", 0):
                ctx = span.get_span_context()
                stamp = self._open.get(ctx.span_id)
                if stamp is not None:
                    _put_back(span, stamp, ctx.span_id)
        except Exception:
            self._count("processor_errors_total")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            ctx = span.get_span_context()
            if ctx is None:
                return
            stamp = self._open.pop(ctx.span_id, None)
            if stamp is None:
                attrs = span.attributes
                if attrs and (cv.is_root_candidate(attrs) or (_dropped(span) and _has_results(attrs))):
                    # It became an agent or task span only through attributes
                    # set after it started, or its limit dropped what named
                    # it (its results still say it is a task root): the
                    # tracker takes it from its end, as the end-order paths
                    # do (a few dict lookups per unrelated span end).
                    self.pipeline.submit_end(span)
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
                    self.pipeline.submit_end(span)
                return
            if stamp.ended:
                # Work that outlived its task's root: the tracker reads it as
                # late (the late-span rule, tracking/late.py) and counts it.
                # One that started after the root ended was never handed over:
                # its stamp names its task, written here if not on the span.
                if stamp.started_late and not self._stamp:
                    self.pipeline.submit_end(_with_stamp(compact_end(span), stamp))
                    return
            elif stamp.root_id == ctx.span_id:
                stamp.ended = True
                self._ended[ctx.span_id] = stamp
                if len(self._ended) > MAX_ENDED_ROOTS:
                    self._ended.popitem(last=False)
                self.pipeline.submit_end(span)
                return
            # A member: what the tracker reads of it, not the SDK's objects.
            self.pipeline.submit_end(compact_end(span))
        except Exception:
            self._count("processor_errors_total")
