"""SDK spans to :class:`SpanData` on the pipeline thread, copying little.

The processor and the exporter hand the pipeline live SDK spans; these turn
them into what the tracker reads, on the pipeline's thread (never the
agent's).

Both read the SDK span's own containers (``BoundedAttributes._dict``,
``BoundedList._dq``) rather than its public properties: ``span.attributes``
wraps them in a ``MappingProxyType`` over a Python-level mapping (a call per
key to copy it) and ``span.events`` copies the event list twice under a
lock. Any other shape falls back to :func:`spanvisor.spans.data.from_sdk`,
which the results equal (``tests/core/test_sdkspans.py``).

The processor hands over the spans of a task in a compact form
(:func:`member_start`, :func:`compact_end`), so that an ended span does not
keep the SDK's objects alive in the inbox; these read both forms.
"""

from __future__ import annotations

import operator
import time
import weakref
from collections import deque
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import StatusCode

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import MAX_AHEAD_NS, SpanData, SpanEventData, from_sdk

# The open roots' events as last converted, by span: a root is re-read on
# every member span with a known key that ends (to order its checkpoints
# before that span) and on every poll, and its events only grow. Weak: an
# entry leaves with the span.
_converted: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], tuple[SpanEventData, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _plain(attrs: Any) -> dict[str, Any] | None:
    """The attributes as a new plain dict, or None when their shape is not
    the SDK's usual one. ``dict(d)`` of a dict is one C call: an agent thread
    writing the same dict meanwhile cannot interleave with it."""
    if type(attrs) is BoundedAttributes:
        d = attrs._dict
        return dict(d) if type(d) is dict else None
    if attrs is None:
        return {}
    return None


def _events_of(span: Any) -> tuple[Any, ...] | None:
    """The span's SDK events now, oldest first; None when not a BoundedList."""
    evs: Any = span._events
    if type(evs) is not BoundedList:
        return None
    dq = getattr(evs, "_dq", None)  # private to the SDK (not in its stubs)
    if type(dq) is not deque:
        return None
    return tuple(dq) if dq else ()


def _convert(ev: Any, now: int) -> SpanEventData | None:
    if type(ev) is not SdkEvent:
        return None
    attrs = _plain(ev._attributes)
    if attrs is None:
        return None
    t = ev._timestamp or 0
    return SpanEventData(ev._name, t if 0 <= t <= now + MAX_AHEAD_NS else now, attrs)


def _read(span: Any, resource: dict[str, Any] | None) -> SpanData | None:
    """``from_sdk(span, resource)``, fast, or None to let from_sdk do it.

    ``resource`` None: the provider's resource attributes, shared (they are
    the same object for every span of a provider and never change)."""
    attrs = _plain(span._attributes)
    events = _events_of(span)
    if attrs is None or events is None:
        return None
    now = time.time_ns()
    start, end = span._start_time or 0, span._end_time
    hi = now + MAX_AHEAD_NS
    if not 0 <= start <= hi or (end is not None and not 0 <= end <= hi):
        return None  # clamped: from_sdk notes and logs it
    converted: tuple[SpanEventData, ...] = ()
    if events:
        seen = _converted.get(span)
        if seen is not None and len(seen[0]) <= len(events) and all(map(operator.is_, seen[0], events)):
            # The same events first (a BoundedList only appends, or drops
            # its oldest): convert only the new ones.
            done = seen[1]
            fresh = [_convert(ev, now) for ev in events[len(done) :]]
        else:
            done = ()
            fresh = [_convert(ev, now) for ev in events]
        new = tuple(e for e in fresh if e is not None)
        if len(new) < len(fresh):
            return None
        converted = done + new
        if all(e.time_ns == ev._timestamp for e, ev in zip(new, events[len(done) :], strict=True)):
            # Kept only when no event time was clamped to now: such a
            # time is read again next time, as from_sdk would.
            _converted[span] = (events, converted)
    ctx = span._context
    parent = span._parent
    status = span._status
    if resource is None:
        r = span._resource
        resource = dict(r.attributes) if r is not None else {}
    return SpanData(
        trace_id=format(ctx.trace_id, "032x") if ctx else "0" * 32,
        span_id=format(ctx.span_id, "016x") if ctx else "0" * 16,
        parent_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span._name,
        start_ns=start,
        end_ns=end,
        attributes=attrs,
        events=converted,
        error=status is not None and status.status_code is StatusCode.ERROR,
        status_message=status.description if status is not None else None,
        parent_remote=bool(parent is not None and parent.is_remote),
        resource=resource,
    )


def _from_sdk(span: Any, resource: dict[str, Any] | None) -> SpanData:
    if isinstance(span, ReadableSpan):
        try:
            got = _read(span, resource)
        except Exception:
            got = None
        if got is not None:
            return got
    return from_sdk(span, resource_attrs=resource)


def snapshot_live(span: Any) -> SpanData | None:
    """An open root as it is now: its attributes and events so far (the
    events converted once, however often it is read)."""
    try:
        return _from_sdk(span, {})
    except Exception:
        return None


class MemberStart(tuple[Any, ...]):
    """A member span's start as the processor hands it over: its context, its
    parent's, its name, start time, attribute dict and resource (see
    :func:`member_start`). Read like an SDK span where the pipeline reads one
    (``get_span_context()``, ``parent``, and :func:`from_sdk` when the tracker
    does not know its parent), as it is at that moment."""

    __slots__ = ()

    def get_span_context(self) -> Any:
        return self[0]

    @property
    def parent(self) -> Any:
        return self[1]

    @property
    def name(self) -> str:
        return str(self[2])

    @property
    def start_time(self) -> int:
        return int(self[3])

    @property
    def end_time(self) -> None:
        return None  # its end comes through its own entry

    @property
    def attributes(self) -> Any:
        return self[4]

    @property
    def events(self) -> tuple[()]:
        return ()

    @property
    def status(self) -> None:
        return None

    @property
    def resource(self) -> Any:
        return self[5]


def member_start(span: Any, parent: Any) -> Any:
    """What the processor puts in the inbox for a stamped span starting in a
    task, on the agent's thread: a :class:`MemberStart`, or the span itself
    when it is not the SDK's usual shape.

    Why: the live span in the inbox keeps all of the SDK's objects for it
    (its locks, attribute wrapper, event and link lists) alive until the
    pipeline thread gets to it, long after the span has ended when the
    pipeline is behind. Every garbage collection meanwhile scans them, and
    most run on the agent's thread, which allocates the most. The pipeline
    needs only the ids (the tracker records the membership); should the
    tracker not know the parent, it reads the span's attributes (the same
    dict the SDK writes) to count it as late work, as it would the span.
    """
    try:
        attrs = span._attributes
        d = attrs._dict if type(attrs) is BoundedAttributes else None
        if type(d) is not dict:
            return span
        return MemberStart((span._context, parent, span._name, span._start_time, d, span._resource))
    except Exception:  # another Span class: handed over as it is
        return span


def compact_end(span: Any) -> Any:
    """What the processor puts in the inbox for a member span that ended, on
    the agent's thread: a plain tuple of what :func:`light_span` reads (see
    :func:`member_start` for why), or the span when it is not the SDK's
    usual shape."""
    if type(span) is not ReadableSpan:
        return span
    try:
        attrs = span._attributes
        d = attrs._dict if type(attrs) is BoundedAttributes else None
        evs = _events_of(span)
    except Exception:  # not the SDK's usual insides: handed over as it is
        return span
    if type(d) is not dict or evs is None:
        return span
    return (
        span._context,
        span._parent,
        span._name,
        span._start_time,
        span._end_time,
        d,
        evs,
        span._status,
        span._resource,
    )


class _Ended:
    """A :func:`compact_end` tuple read as an ended SDK span (for from_sdk)."""

    __slots__ = ("_ctx", "attributes", "end_time", "events", "name", "parent", "resource", "start_time", "status")

    def __init__(self, t: tuple[Any, ...]) -> None:
        (
            self._ctx,
            self.parent,
            self.name,
            self.start_time,
            self.end_time,
            self.attributes,
            self.events,
            self.status,
            self.resource,
        ) = t

    def get_span_context(self) -> Any:
        return self._ctx


# Hoisted: read for every span that ends. Every key the tracker reads other
# than a stamp (a budget on a root that otherwise carries only its name and
# agent id is one): such a span is read whole.
_FULL_KEYS = cv.FULL_READ_KEYS
_STAMP_KEYS = cv.STAMP_KEYS
_EVENT_NAMES = cv.KNOWN_EVENTS | {cv.EVENT_EXCEPTION}
_is_result = operator.methodcaller("startswith", cv.RESULT_PREFIX)


def light_span(span: Any) -> SpanData:
    """An ended SDK span as SpanData, copying only what the tracker reads.

    Most spans of a task (tool calls, retrievals) carry nothing but the
    processor's stamps; one pass over their keys decides, and they keep
    only the stamps.
    """
    if type(span) is tuple:
        return _light_compact(span)
    sdk = isinstance(span, ReadableSpan)
    attrs = span._attributes if sdk else span.attributes
    if type(attrs) is BoundedAttributes:
        attrs = attrs._dict  # ended: the SDK no longer writes it
    stamps: dict[str, Any] = {}
    if attrs:
        if not _FULL_KEYS.isdisjoint(attrs) or any(map(_is_result, attrs)):
            return _full(span)  # results live on a root that may carry only stamps
        stamps = {k: v for k, v in attrs.items() if k in _STAMP_KEYS}
    evs = _events_of(span) if sdk else None
    if evs is None:
        evs = tuple(span.events)
    if evs and any(e.name in _EVENT_NAMES for e in evs):
        return _full(span)  # a failure's type and message live in its exception event
    if sdk:
        ctx, parent, status, resource = span._context, span._parent, span._status, span._resource
        name, start, end = span._name, span._start_time, span._end_time
    else:
        ctx, parent, status, resource = span.get_span_context(), span.parent, span.status, span.resource
        name, start, end = span.name, span.start_time, span.end_time
    return _stamps_only(ctx, parent, name, start, end, stamps, status, resource)


def _stamps_only(
    ctx: Any,
    parent: Any,
    name: str,
    start: int | None,
    end: int | None,
    stamps: dict[str, Any],
    status: Any,
    resource: Any,
) -> SpanData:
    """A span that carries nothing but its ids and stamps, as the tracker reads it."""
    return SpanData(
        trace_id=format(ctx.trace_id, "032x"),
        span_id=format(ctx.span_id, "016x"),
        parent_id=format(parent.span_id, "016x") if parent is not None else None,
        name=name,
        start_ns=start or 0,
        end_ns=end,
        attributes=stamps,
        error=status is not None and status.status_code is StatusCode.ERROR,
        status_message=status.description if status is not None else None,
        parent_remote=bool(parent is not None and parent.is_remote),
        # The provider's resource names the agent (service.name) when nothing
        # else does; shared by every span, so referenced, not copied.
        resource=resource.attributes if resource else {},
    )


def _light_compact(t: tuple[Any, ...]) -> SpanData:
    """:func:`light_span` of a :func:`compact_end` tuple."""
    ctx, parent, name, start, end, attrs, evs, status, resource = t
    stamps: dict[str, Any] = {}
    if attrs:
        if not _FULL_KEYS.isdisjoint(attrs) or any(map(_is_result, attrs)):
            return from_sdk(_Ended(t))  # type: ignore[arg-type]  # read as an SDK span
        stamps = {k: v for k, v in attrs.items() if k in _STAMP_KEYS}
    if evs and any(e.name in _EVENT_NAMES for e in evs):
        return from_sdk(_Ended(t))  # type: ignore[arg-type]
    return _stamps_only(ctx, parent, name, start, end, stamps, status, resource)


def _full(span: Any) -> SpanData:
    """Everything of an ended span that can cause events (from_sdk's result)."""
    return _from_sdk(span, None)
