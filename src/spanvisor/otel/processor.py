"""SpanvisorSpanProcessor: the in-process path, on the agent's TracerProvider.

``on_start`` and ``on_end`` are O(1): they never wait on I/O and never raise
into the agent; everything else happens on the pipeline's thread. An
exception caught in a hook (or in the classification it hands over) is
counted in ``processor_errors_total``.

Two hand-overs:

* **By default** (no other span processor on the provider, nothing to
  stamp) each hook is one bounded append of the span as it is to the inbox,
  bare, no tuple (a drop counted in ``dropped_total{reason="inbox_full"}``
  when full), and ``_on_ending`` is a C-level no-op. Only a span whose start
  attributes could make it a task root does more: they are copied as it
  starts (:class:`StartedRoot`). The pipeline's thread tells which task each
  span belongs to (:mod:`spanvisor.otel.replay`), replaying the
  classification below in the order the hooks ran: the same decisions, off
  the agent's thread (docs/design/performance.md).
* **Once a task is stamped or another processor reads its spans**, the hooks
  classify on the agent's thread, for good: the stamp is written as a span
  starts, and another processor's ``on_end`` must see an identity put back
  (in ``on_end`` when spanvisor's is called first, else ``_on_ending``). A span of no task they know (one of a task begun before,
  or none) still goes over as it is. (A possible root starting then inside
  a task begun before starts a task of its own: the hooks never saw that
  task's spans. Only when another processor is added while tasks run.)

The classification. A member span of a task goes to the tracker at its
start (ids only) and its end; its root goes in as a :class:`StartedRoot`,
read live by the tracker.

Late work (a span ending after its root ended, or starting under it
afterwards) and a span of no task known at its start that carries a key
spanvisor reads, an event or an error: see :mod:`spanvisor.otel.classify`
(the tracker reads the first under the late-span rule, ``tracking/late.py``).

Stamps, and a task's identity put back past the attribute limit: see
:mod:`spanvisor.otel.stamp`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from spanvisor.config import Config
from spanvisor.otel.attach import PipelineOwner, ignore
from spanvisor.otel.classify import MAX_OPEN_SPANS, UNKNOWN, Tasks, attrs_now, attrs_of, end, start
from spanvisor.otel.replay import MAX_TASK_TRACES, Replay
from spanvisor.otel.stamp import called_first, direct_stamp, put_back_task, stamp_for, stamp_mode, write_stamp
from spanvisor.pipeline.handover import StartedRoot
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import Sink
from spanvisor.spans import conventions as cv

__all__ = ["SpanvisorSpanProcessor", "stamp_for"]  # stamp_for: where callers have always found it

log = logging.getLogger("spanvisor.processor")

# What on_start reads of every span's attributes (module globals: one cached
# lookup each in the hook).
TASK_NAME, TASK_ID, GEN_AI_OPERATION, OI_KIND, TL_KIND = (
    cv.TASK_NAME,
    cv.TASK_ID,
    cv.GEN_AI_OPERATION,
    cv.OI_KIND,
    cv.TL_KIND,
)
# The stamp's other keys (all it can hold: see stamp_for), read by a member's on_start.
TASK_ROOT, AGENT_ID = cv.TASK_ROOT, cv.AGENT_ID
AGENT_OPS = cv.GEN_AI_AGENT_OPS


class SpanvisorSpanProcessor(PipelineOwner, SpanProcessor, Replay):
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
        # Tasks the hooks classify on the agent's thread (once stamping), and those the
        # pipeline's thread classifies from the spans handed over as they are (until then).
        self._mine = Tasks()
        self._opened = self._mine.open  # read per span
        # Traces whose possible task root started here, by trace id (the
        # root's span id), while the root is open: what the log processor
        # reads, on the agent's thread, to keep a record of a task the
        # pipeline has not heard of yet. Written at a root's start, removed
        # when the pipeline's thread sees the trace's last open task root end
        # (see _root_ended); bounded. One window stays: a root starting after
        # another of its trace ended, while the pipeline is between that end
        # and this start, finds the trace still hinted and the pipeline drops
        # it until it reaches this start: a record emitted in it is none's.
        self.task_traces: OrderedDict[int, int] = OrderedDict()
        # Spans whose end a full inbox refused: the pipeline's thread still closes them in its
        # classification (the end is lost, not the bookkeeping), or its map of open spans
        # would keep them for good. Bounded (the inbox's size or MAX_TASK_TRACES, the larger).
        self._lost: deque[Any] = deque(maxlen=max(self.pipeline._inbox.size, MAX_TASK_TRACES))
        self._theirs = Tasks()
        # The open task roots of each trace, as the pipeline's thread
        # classifies them (its own: see _root_ended). Bounded.
        self._trace_roots: OrderedDict[int, list[int]] = OrderedDict()
        # Stamps serve spans exported elsewhere (a Collector to `spanvisor serve`): "auto"
        # stamps a task when another processor can send its spans out, "on" always, "off" never.
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
        # Spans handed over as they are go in bare, no tuple (see
        # spanvisor.pipeline.inbox): the inbox turns them back into entries
        # with _replay. One processor per inbox does so; another on the same
        # (the process-wide default pipeline) tags its own, with a tuple.
        if self._inbox.replay is None:
            self._inbox.replay = self._replay
        else:
            self._append = _tagging(self._append, self._replay)
        # An end goes in unchecked while no start was refused: ``on_end`` is
        # the append itself, no Python frame. Each end is of a span whose
        # start went in (and is still open), so the inbox holds at most
        # ``limit`` entries plus one per open span; once a start is refused,
        # ends are checked (_on_end_checked) until the inbox has room again.
        self._plain_end = True
        self.on_end = self._append  # type: ignore[method-assign,assignment]
        # The SDK calls every processor's ``_on_ending`` for every span. Until
        # a task is stamped or another processor reads its spans nothing needs
        # putting back there (the pipeline puts a root's identity back): a
        # C-level function that ignores its argument costs a third of a
        # Python no-op. Swapped for _put_back_dropped when classifying starts.
        self._on_ending = id  # type: ignore[method-assign,assignment]
        # Whether on_end puts an identity back itself (see _starts_classifying).
        self._ends_first = False
        if self.off:  # spanvisor is off here (pipeline.agentconfig): every span is left as it is
            self.on_start = self.on_end = self._on_ending = ignore  # type: ignore[method-assign,assignment]

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
            # cv.is_root_candidate, with the usual span (none of the keys, or
            # a model call's operation) told in a few lookups: classify's
            # root_at_start, inlined (a call is a tenth of what it costs).
            if d and (
                TASK_NAME in d
                or TASK_ID in d
                or d.get(GEN_AI_OPERATION) in AGENT_OPS
                or ((OI_KIND in d or TL_KIND in d) and cv.is_root_candidate(d))
            ):
                if self._starts_classifying(span):
                    # No log hint: ``_opened`` tells (nothing took a hint back).
                    self._on_start_classifying(span)
                else:
                    self._hand_over(StartedRoot(span, attrs_now(span)))
                    self._task_trace(span)
            elif len(self._items) < self._inbox.limit:
                self._append(span)
            else:
                self._refused()
        except Exception:  # never into the agent
            self._count("processor_errors_total")

    def on_end(self, span: ReadableSpan) -> None:  # not called: set in __init__
        self._append(span)

    def _on_end_checked(self, span: ReadableSpan) -> None:
        """``on_end`` once a start was refused: the bound checked again,
        until the inbox has room."""
        if not self._plain_end:  # the hooks classify now (swapped on another thread)
            self._on_end_classifying(span)
            return
        try:
            if len(self._items) < self._inbox.limit:
                self._append(span)  # the SDK's ReadableSpan: an end (see _replay)
                self._swap_end(self._append)
            else:
                self._drop()
                self._lost.append(span)
        except Exception:
            self._count("processor_errors_total")

    def _on_start_classifying(self, span: Span, parent_context: Context | None = None) -> None:
        """``on_start`` once the hooks classify (see :meth:`_starts_classifying`)."""
        try:
            parent = span._parent  # the property's own field: a call less per span
            if parent is not None:
                opened = self._opened
                # A SpanContext is a tuple: [1] is its span id without the
                # property's Python call (twice a span here, once in on_end).
                stamp = opened.get(parent[1])
                if stamp is not None and len(opened) < MAX_OPEN_SPANS and len(self._items) < self._inbox.limit:
                    # A member of an open task, the usual span: its stamp
                    # written, its id remembered, the span itself appended.
                    if span._span_processor is stamp.direct:
                        # Stamped, open (None once the root ended), made by the
                        # root's provider, which calls this first: its limits
                        # were read at the root (Stamp.room), no lock needed.
                        d = span._attributes._dict  # type: ignore[union-attr]
                        if len(d) <= stamp.room and TASK_ROOT not in d and TASK_ID not in d and AGENT_ID not in d:
                            d.update(stamp.attrs)
                        else:
                            write_stamp(span, stamp)  # near the limit, or the agent's own values
                    elif stamp.ended:
                        stamp = None  # work that outlived its root: classified below
                    elif stamp.stamped:  # write_direct inlined, under the lock
                        attrs: Any = span._attributes
                        d = attrs._dict if type(attrs) is BoundedAttributes and attrs.max_value_len is None else None
                        if (
                            d is not None
                            and (attrs.maxlen is None or len(d) + stamp.count <= attrs.maxlen)
                            and TASK_ROOT not in d
                            and TASK_ID not in d
                            and AGENT_ID not in d
                        ):
                            with attrs._lock:
                                d.update(stamp.attrs)
                        else:
                            write_stamp(span, stamp)
                    if stamp is not None:
                        opened[span._context[1]] = stamp  # type: ignore[index]
                        self._append(("start", span))
                        return
            got = start(self._mine, span, parent, attrs_of(span), self._stamps, self._drop)
            if type(got) is StartedRoot:
                root = self._opened.get(got.span._context[1])
                if root is not None and root.stamped and called_first(self, got.span):
                    direct_stamp(root, got.span)
                if got.span is not span:  # its parent, named late (classify.start): this one a member now
                    self._submit_start(got)
                    got = start(self._mine, span, parent, attrs_of(span), self._stamps, self._drop)
            if got is UNKNOWN:
                # No task known here: one the pipeline's thread classifies
                # (begun before classifying started), or none at all.
                self._hand_over(span)
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
            sid = ctx[1]  # its span id (see _on_start_classifying)
            stamp = self._opened.pop(sid, None)
            if stamp is None:
                self._hand_over(span, end=True)  # as in _on_start_classifying
                return
            if self._ends_first:
                # First of the provider's processors, called in turn: here is
                # still before any other's on_end (see _starts_classifying).
                try:
                    if span._attributes.dropped:  # type: ignore[union-attr]
                        put_back_task(span, stamp, sid)
                except Exception:  # the span still goes over
                    self._count("processor_errors_total")
            if not stamp.ended and sid != stamp.root_id and self._inbox.limit:
                # A member of an open task, unchecked: each span in ``_opened``
                # ends once, so the inbox holds its limit plus one per open span
                # (a closed inbox, limit 0, refuses and counts them below).
                self._append(("end", span))
                return
            got = end(self._mine, span, ctx, stamp, None)
            if got is not None:
                self._submit_end(got)
        except Exception:
            self._count("processor_errors_total")

    def _hand_over(self, span: Any, end: bool = False) -> None:
        if len(self._items) < self._inbox.limit:
            self._append(span)
        elif end:
            self._drop()
            self._lost.append(span)
        else:
            self._refused()

    def _refused(self) -> None:
        """A start the full inbox refused: counted, and ends checked again."""
        self._drop()
        self._swap_end(self._on_end_checked)

    def _swap_end(self, to: Any) -> None:
        """``on_end`` swapped while spans go over as they are. Another agent
        thread may start classifying meanwhile (it clears ``_plain_end``,
        then swaps): the check after the swap puts its ``on_end`` back."""
        if self._plain_end:
            self.on_end = to  # type: ignore[method-assign]
            if not self._plain_end:
                self.on_end = self._on_end_classifying  # type: ignore[method-assign]

    def _starts_classifying(self, span: Span) -> bool:
        """At a possible task root: whether its task's spans must be known on
        this thread (stamped, or read by another processor, whose on_end must
        see an identity put back); if so the hooks classify from now on."""
        if self._stamp_mode == "on" or self._others(span):
            # Instance attributes, for good: the SDK calls these per span, and
            # a branch in every call costs what the swap saves. An identity
            # is put back before any other processor's on_end reads the span:
            # in on_end itself when this processor's is called first (added
            # first, to a provider that calls its processors in turn; others
            # are only ever added after it), else in _on_ending, which the
            # SDK calls for every span (a Python call each).
            self._ends_first = called_first(self, span)
            if not self._ends_first:
                self._on_ending = self._put_back_dropped  # type: ignore[method-assign]
            self._plain_end = False
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

    def _stamps(self, span: Span) -> bool:
        """Whether the task whose root ``span`` is gets stamped (the setting)."""
        if self._ends_first and not called_first(self, span):
            # A root of another provider, where this processor is not called
            # first: identities are put back in _on_ending from now on.
            self._ends_first = False
            self._on_ending = self._put_back_dropped  # type: ignore[method-assign]
        mode = self._stamp_mode
        return mode == "on" or (mode == "auto" and self._others(span))

    def _put_back_dropped(self, span: Span) -> None:
        """The SDK's ``_on_ending`` hook (between a span's end and every
        processor's ``on_end``, SDK 1.40+) once the hooks classify: a task
        span whose limit dropped attributes gets its task's identity back
        (:func:`put_back`) before any processor reads it."""
        try:
            if span._attributes.dropped:  # type: ignore[union-attr]
                ctx = span._context
                stamp = self._mine.open.get(ctx.span_id)  # type: ignore[union-attr]
                if stamp is not None:
                    put_back_task(span, stamp, ctx.span_id)  # type: ignore[union-attr]
        except Exception:
            self._count("processor_errors_total")


def _tagging(append: Any, replay: Any) -> Any:
    """An append that wraps each item in a ``("raw", replay, item)`` entry:
    for a processor whose inbox another processor's bare items use."""

    def tag(item: Any) -> None:
        append(("raw", replay, item))

    return tag
