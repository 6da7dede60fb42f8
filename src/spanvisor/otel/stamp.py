"""The processor's stamp: a task's identity written on each of its spans.

What :class:`spanvisor.otel.processor.SpanvisorSpanProcessor` writes on the
spans of a task as they start (``docs/reference/conventions.md``, "Stamps written by the
processor") and puts back on one whose attribute limit dropped it.

Stamps: the processor writes ``agent.task.id``, ``agent.task.root_span_id``
and (when known) ``agent.id`` on every span of a task as it starts, so spans
exported elsewhere, through a Collector to ``spanvisor serve``, can still be
grouped into their task. Only then: with ``SPANVISOR_STAMP_SPANS=auto`` (the
default) a task is stamped when, as its root starts, the TracerProvider has
a span processor other than this one (the processor's ``_others``); ``true``
forces stamping (spans leaving some other way), ``false`` turns it off. The
decision holds for the whole task. The stamp is written straight into the
new span's attribute dict in one ``dict.update`` (:func:`write_direct`, which
a member's ``on_start`` inlines: a tenth of the SDK's validated write), else
in one ``set_attributes`` call. ``on_start`` runs inside ``start_span``,
before the agent holds the span: when spanvisor's processor is the
provider's first, no other code holds it yet and no other thread can be
writing to it, so the write takes the attributes' lock only when another
processor saw the span first.

A root's attributes as it started go with it (``StartedRoot``): an agent
giving it more attributes than the span's limit makes the SDK drop the
oldest, its task's identity first, before the pipeline reads it. A task span
that ends with attributes dropped gets that identity back (:func:`put_back`):
in ``_on_ending``, before any processor's ``on_end``, when another processor
reads it; on the pipeline's thread otherwise, before the tracker reads it.
"""

from __future__ import annotations

import sys
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span, SynchronousMultiSpanProcessor

from spanvisor.pipeline.handover import compact_end
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.tasktable import default_task_id


class Stamp:
    """One task as the processor sees it, shared by all its open spans.

    ``ended`` flips when the root ends (on the agent's thread that ends it).
    ``started_late`` marks the twin that spans starting after that share:
    they were never handed to the tracker.
    """

    __slots__ = (
        "_late",
        "attrs",
        "count",
        "direct",
        "ended",
        "keys",
        "longest",
        "room",
        "root_attrs",
        "root_id",
        "source",
        "stamped",
        "started_late",
    )

    def __init__(self, attrs: dict[str, str], root_id: int, started_late: bool = False, stamped: bool = True) -> None:
        self.attrs = attrs
        self.count = len(attrs)
        self.keys = frozenset(attrs)
        self.longest = max(map(len, attrs.values()), default=0)
        self.root_id = root_id
        self.ended = started_late
        self.started_late = started_late
        # Whether this task's spans carry the stamp (decided at its root's start).
        self.stamped = stamped
        self._late: Stamp | None = None
        # The root's attributes as it started, stamp included (see StartedRoot).
        self.root_attrs: dict[str, Any] = {}
        # The root's provider's span processors (the SDK's multi-processor):
        # whether any other may read its spans (see restored).
        self.source: Any = None
        # ``source`` when this task is stamped and spanvisor's processor is
        # the first its provider calls, else None: a member whose
        # ``_span_processor`` is this gets the stamp without the lock (one
        # identity check in ``on_start`` for the three it stands for; see
        # write_direct). Set by the processor as the root starts
        # (direct_stamp), and None again once the root ends.
        self.direct: Any = None
        # With ``direct``: the most attributes a member may hold for the
        # stamp to go in whole, within its provider's count limit.
        self.room = 0

    def late(self) -> Stamp:
        if self._late is None:
            self._late = Stamp(self.attrs, self.root_id, started_late=True, stamped=self.stamped)
        return self._late

    def lost(self, span_id: int) -> dict[str, Any]:
        """What the span should carry of its task's identity: the root all
        of it as it started, a member the stamp."""
        if span_id == self.root_id:
            kept = self.root_attrs
            return {k: kept[k] for k in cv.IDENTITY_KEYS if k in kept}
        return self.attrs


def direct_stamp(stamp: Stamp, root: Any) -> None:
    """``stamp.direct`` (and ``room``) from its task's root, once the
    processor knows its provider calls it first: only when the provider's
    spans cut no values (``max_value_len``), so that a member made by that
    provider takes the stamp in one ``dict.update`` after one identity check
    (every tracer of a provider shares its span limits)."""
    attrs = root._attributes
    if type(attrs) is BoundedAttributes and attrs.max_value_len is None:
        stamp.room = sys.maxsize if attrs.maxlen is None else attrs.maxlen - stamp.count
        stamp.direct = stamp.source


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


def write_direct(span: Span, stamp: Stamp) -> bool:
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
        d = attrs._dict  # type: ignore[union-attr]
        if type(attrs) is not BoundedAttributes or type(d) is not dict or attrs._immutable:
            return False
        new = stamp.attrs
        limit = attrs.maxlen
        if limit is not None and len(d) + len(new) > limit:
            return False  # the SDK would drop the oldest keys: let it
        width = attrs.max_value_len
        if width is not None and stamp.longest > width:
            return False  # the SDK would cut the values: let it
        # acquire/release rather than ``with``: a fifth of the call's cost.
        lock = attrs._lock
        lock.acquire()
        try:
            if stamp.keys.isdisjoint(d):
                d.update(new)  # the usual span: none of the stamp's keys of its own
            else:
                for k, v in new.items():
                    d.setdefault(k, v)  # the agent's own value wins
        finally:
            lock.release()
        return True
    except Exception:
        return False


def write_stamp(span: Span, stamp: Stamp) -> None:
    """The stamp on a starting span: :func:`write_direct`, else :func:`set_stamp`."""
    if not write_direct(span, stamp):
        set_stamp(span, stamp)


def set_stamp(span: Span, stamp: Stamp) -> None:
    """The stamp through the SDK's public call, with the keys the span does not have."""
    current = span.attributes
    # One pass over the span's few keys and one locked write: a
    # ``key in attributes`` miss costs an exception inside the SDK.
    present = [k for k in current if k in cv.STAMP_KEYS] if current else ()
    span.set_attributes({k: v for k, v in stamp.attrs.items() if k not in present} if present else stamp.attrs)


def put_back(span: Any, stamp: Stamp, span_id: int) -> None:
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
    with attrs._lock:
        attrs.dropped += _put_back_into(d, stamp.lost(span_id), attrs.maxlen)


def put_back_task(span: Any, stamp: Stamp, span_id: int) -> None:
    """:func:`put_back` on a span of the task: a member of an unstamped task
    never had the stamp, so nothing of its own may make room for it."""
    if stamp.stamped or span_id == stamp.root_id:
        put_back(span, stamp, span_id)


def _put_back_into(d: dict[str, Any], want: dict[str, Any], limit: int | None) -> int:
    """``want``'s keys missing from ``d`` put back, each in the place of the
    oldest other key when ``d`` is at ``limit``; how many were pushed out."""
    out = 0
    for k, v in want.items():
        if k in d:
            continue
        if limit is not None and len(d) >= limit:
            oldest = next((x for x in d if x not in want), None)
            if oldest is None:
                return out  # a limit smaller than the identity itself
            del d[oldest]
            out += 1
        d[k] = v
    return out


def restored(span: Any, stamp: Stamp, span_id: int) -> Any:
    """:func:`put_back` on a copy: a :func:`compact_end` tuple of the span
    with its task's identity back, the span itself untouched (another
    processor may be reading it on another thread); the span as it is when
    it is not the SDK's usual shape."""
    t = compact_end(span)
    attrs = span._attributes
    if type(t) is not tuple or type(attrs) is not BoundedAttributes:
        return span
    with attrs._lock:
        d = dict(t[5])
    pushed = _put_back_into(d, stamp.lost(span_id), attrs.maxlen)
    return (*t[:5], d, *t[6:9], t[9] + pushed)


def called_first(processor: Any, span: Any) -> bool:
    """Whether the provider that made ``span`` calls ``processor``'s
    ``on_end`` first, before any other's: the SDK's synchronous
    multi-processor, with it first in its tuple (then an identity put back
    in its ``on_end`` is there before any other processor reads the span)."""
    try:
        multi = span._span_processor
        procs = multi._span_processors
    except AttributeError:
        return False
    return (
        type(multi) is SynchronousMultiSpanProcessor and type(procs) is tuple and bool(procs) and procs[0] is processor
    )


def stamp_mode(value: Any) -> str:
    """``SPANVISOR_STAMP_SPANS`` as "auto", "on" or "off" (a bool from code too)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    v = str(value).strip().lower()
    return v if v in ("auto", "on", "off") else "auto"


def with_stamp(ended: Any, stamp: Stamp) -> Any:
    """A :func:`compact_end` tuple with the stamp among its attributes (the
    span's own values win); anything else as it is."""
    if type(ended) is not tuple:
        return ended
    return (*ended[:5], {**stamp.attrs, **ended[5]}, *ended[6:])
