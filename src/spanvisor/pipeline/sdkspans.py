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

The processor hands over the spans of a task in a compact form and its root
as a :class:`~.handover.StartedRoot` (:mod:`.handover`); these read every form.
"""

from __future__ import annotations

import operator
import time
import weakref
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from spanvisor.pipeline.handover import Ended, StartedRoot, events_of
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import MAX_AHEAD_NS, SpanData, SpanEventData, from_sdk, limited

# The open roots' events as last converted, by span: a root is read whole
# on every poll (for its attributes; the tracker takes only its new events,
# spans/rootevents.py) and its events only grow. Weak: an entry leaves with
# the span.
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
    events = events_of(span)
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
        if end is None and all(e.time_ns == ev._timestamp for e, ev in zip(new, events[len(done) :], strict=True)):
            # Kept for an open root, read again at every poll (an ended
            # span is read once), and only when no event time was clamped
            # to now: such a time is read again next time, as from_sdk would.
            _converted[span] = (events, converted)
    ctx = span._context
    parent = span._parent
    status = span._status
    if resource is None:
        resource = _resource_dict(span._resource)
    dropped = span._attributes.dropped
    if dropped:
        return _limited(span, resource, attrs, converted, dropped)
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


# The last resource read and its attributes as a dict: every span of a
# provider carries the same Resource object, which never changes, so its
# attributes are copied once, not once a span (a copy through the
# BoundedAttributes mapping was 2.4 % of the pipeline thread's time in an
# agent). Replaced whole, so the pipeline thread and an exporter's never see
# half of it.
_last_resource: list[tuple[Any, dict[str, Any]]] = [(None, {})]


def _resource_dict(r: Any) -> dict[str, Any]:
    """``dict(r.attributes)``, shared by every span of ``r`` (read only:
    ``SpanData.resource`` is a ``Mapping``)."""
    seen, attrs = _last_resource[0]
    if seen is r and r is not None:
        return attrs
    if r is None:
        return {}
    attrs = dict(r.attributes)
    _last_resource[0] = (r, attrs)
    return attrs


def _limited(
    span: Any, resource: dict[str, Any], attrs: dict[str, Any], events: tuple[SpanEventData, ...], dropped: int
) -> SpanData:
    """:func:`_read`'s result for a span whose attribute limit dropped some (rare)."""
    read, note = limited(attrs, span._name, dropped)
    ctx, parent, status = span._context, span._parent, span._status
    return SpanData(
        trace_id=format(ctx.trace_id, "032x") if ctx else "0" * 32,
        span_id=format(ctx.span_id, "016x") if ctx else "0" * 16,
        parent_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span._name,
        start_ns=span._start_time or 0,
        end_ns=span._end_time,
        attributes=read,
        events=events,
        error=status is not None and status.status_code is StatusCode.ERROR,
        status_message=status.description if status is not None else None,
        parent_remote=bool(parent is not None and parent.is_remote),
        resource=resource,
        notes=(note,),
        dropped_attributes=dropped,
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
        if type(span) is StartedRoot:
            return span.read(_from_sdk(span.span, {}))
        return _from_sdk(span, {})
    except Exception:
        return None


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
    dropped = 0
    if type(attrs) is BoundedAttributes:
        dropped = attrs.dropped
        attrs = attrs._dict  # ended: the SDK no longer writes it
    stamps: dict[str, Any] = {}
    if attrs:
        if not _FULL_KEYS.isdisjoint(attrs) or any(map(_is_result, attrs)):
            return _full(span)  # results live on a root that may carry only stamps
        stamps = {k: v for k, v in attrs.items() if k in _STAMP_KEYS}
    evs = events_of(span) if sdk else None
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
    return _stamps_only(ctx, parent, name, start, end, stamps, status, resource, dropped)


def _stamps_only(
    ctx: Any,
    parent: Any,
    name: str,
    start: int | None,
    end: int | None,
    stamps: dict[str, Any],
    status: Any,
    resource: Any,
    dropped: int,
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
        dropped_attributes=dropped,
    )


def _light_compact(t: tuple[Any, ...]) -> SpanData:
    """:func:`light_span` of a :func:`compact_end` tuple."""
    ctx, parent, name, start, end, attrs, evs, status, resource, dropped = t
    stamps: dict[str, Any] = {}
    if attrs:
        if not _FULL_KEYS.isdisjoint(attrs) or any(map(_is_result, attrs)):
            return from_sdk(Ended(t))  # type: ignore[arg-type]  # read as an SDK span
        stamps = {k: v for k, v in attrs.items() if k in _STAMP_KEYS}
    if evs and any(e.name in _EVENT_NAMES for e in evs):
        return from_sdk(Ended(t))  # type: ignore[arg-type]
    return _stamps_only(ctx, parent, name, start, end, stamps, status, resource, dropped)


def _full(span: Any) -> SpanData:
    """Everything of an ended span that can cause events (from_sdk's result)."""
    return _from_sdk(span, None)
