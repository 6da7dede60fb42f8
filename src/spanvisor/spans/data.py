"""SpanData: the one span shape the tracker reads, whatever the source.

The processor and the exporter build it from SDK spans, the receiver from
OTLP protobuf. Ids are lower-case hex (32 digits for traces, 16 for spans),
as in OTLP/JSON and every tracing UI.

Times are clamped on the way in (:func:`clamp_times`): a span may claim to
end at 2^64-1 ns, which fits no int64 column, and a task whose finish can
never be stored stays ``working`` forever. What was clamped is said in the
span's ``notes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from spanvisor.spans import conventions as cv

log = logging.getLogger("spanvisor.spans")

# How far a span's times may run ahead of our clock (clock skew between
# hosts) before they are taken as wrong and clamped to our clock.
MAX_AHEAD_NS = 24 * 3600 * 10**9


@dataclass(frozen=True, slots=True)
class SpanEventData:
    name: str
    time_ns: int
    attributes: Mapping[str, Any]


@dataclass(slots=True)
class SpanData:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int | None
    attributes: Mapping[str, Any]
    events: Sequence[SpanEventData] = ()
    error: bool = False
    # str or None from the SDK and the decoder; typed object because a caller
    # may hand anything, and every reader sanitises it (compiled code checks
    # declared types when it reads them).
    status_message: object = None
    parent_remote: bool = False
    resource: Mapping[str, Any] = field(default_factory=dict)
    # Why a value of this span was changed on the way in, e.g. a clamped time.
    notes: tuple[str, ...] = ()
    # Attributes the sender's attribute limit dropped (the SDK drops the
    # oldest first: a task's identity and stamps go first).
    dropped_attributes: int = 0


def clamp_times(start_ns: int, end_ns: int | None, now_ns: int) -> tuple[int, int | None, str | None]:
    """``(start, end, note)`` with both times in a range every sink can store.

    A time later than ``now_ns`` plus :data:`MAX_AHEAD_NS` (or below zero)
    becomes ``now_ns``: the span had certainly ended by the time we got it.
    A start clamped so is never after the end. ``note`` says what changed,
    or is None when nothing did.
    """
    hi = now_ns + MAX_AHEAD_NS
    notes: list[str] = []
    if end_ns is not None and not 0 <= end_ns <= hi:
        notes.append(f"end time {end_ns} ns out of range, set to {now_ns}")
        end_ns = now_ns
    if not 0 <= start_ns <= hi:
        to = now_ns if end_ns is None else min(now_ns, end_ns)
        notes.append(f"start time {start_ns} ns out of range, set to {to}")
        start_ns = to
    return start_ns, end_ns, "; ".join(notes) or None


def clamp_time(t_ns: int, now_ns: int) -> int:
    """One time (an event's) in the same range; out of it, ``now_ns``."""
    return t_ns if 0 <= t_ns <= now_ns + MAX_AHEAD_NS else now_ns


def trace_hex(n: int) -> str:
    return format(n, "032x")


def span_hex(n: int) -> str:
    return format(n, "016x")


def _copy(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    # An open span's attributes are a live view written by the agent's
    # thread; copying can race with a write, so retry a few times.
    if not attrs:
        return {}
    for _ in range(3):
        try:
            return dict(attrs)
        except RuntimeError:
            continue
    return {}


# Set once the first clamp of an SDK span has been logged.
_sdk_clamp_logged: list[bool] = []


def _log_sdk_clamp(name: str, note: str) -> None:
    if not _sdk_clamp_logged:
        _sdk_clamp_logged.append(True)
        log.warning("span %r: %s (logged once; later clamps are noted on the span only)", name, note)


LIMIT_NOTE = "attribute(s) dropped by the sender's attribute limit"


def limited(attrs: Mapping[str, Any], name: str, dropped: int) -> tuple[Mapping[str, Any], str]:
    """A span whose attribute limit dropped ``dropped`` (> 0) of its
    attributes, as the tracker reads it, and the note saying so.

    The SDK drops the oldest attributes first, so a root given many results
    loses its name, its agent and the processor's stamp before anything
    else. Results are set on a task's root only: a span still carrying some,
    with nothing left that names a task, is read as a task root named after
    the span (the processor, which saw the root start, puts its identity
    back before this is needed, see otel/processor.py)."""
    note = f"{dropped} {LIMIT_NOTE} (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT)"
    if cv.TASK_ROOT in attrs or cv.is_root_candidate(attrs):
        return attrs, note
    if any(k.startswith(cv.RESULT_PREFIX) for k in attrs):
        return {**attrs, cv.TASK_NAME: name}, note + "; a task root by its results, named after its span"
    return attrs, note


def from_sdk(span: ReadableSpan, resource_attrs: Mapping[str, Any] | None = None) -> SpanData:
    ctx = span.get_span_context()
    parent = span.parent
    status = span.status
    now = time.time_ns()
    start, end, note = clamp_times(span.start_time or 0, span.end_time, now)
    if note is not None:
        _log_sdk_clamp(span.name, note)
    events = tuple(SpanEventData(e.name, clamp_time(e.timestamp or 0, now), _copy(e.attributes)) for e in span.events)
    attrs: Mapping[str, Any] = _copy(span.attributes)
    notes = (note,) if note is not None else ()
    dropped = getattr(span, "dropped_attributes", 0)
    if type(dropped) is not int or dropped < 0:
        dropped = 0
    if dropped:
        attrs, why = limited(attrs, span.name, dropped)
        notes = (*notes, why)
    return SpanData(
        trace_id=trace_hex(ctx.trace_id) if ctx else "0" * 32,
        span_id=span_hex(ctx.span_id) if ctx else "0" * 16,
        parent_id=span_hex(parent.span_id) if parent is not None else None,
        name=span.name,
        start_ns=start,
        end_ns=end,
        attributes=attrs,
        events=events,
        error=status is not None and status.status_code is StatusCode.ERROR,
        status_message=status.description if status is not None else None,
        parent_remote=bool(parent is not None and parent.is_remote),
        resource=resource_attrs
        if resource_attrs is not None
        else _copy(span.resource.attributes if span.resource else None),
        notes=notes,
        dropped_attributes=dropped,
    )


def read_live_sdk_span(span: Any) -> SpanData | None:
    """An open SDK span as it is now (its attributes and events so far)."""
    try:
        return from_sdk(span, resource_attrs={})
    except Exception:
        return None
