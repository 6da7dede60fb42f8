"""What the processor hands the pipeline.

Spans go into the inbox as they are (the SDK's span; building a compact copy
on the agent's thread cost it more than keeping the SDK's objects alive until
the pipeline frees them: docs/design/performance.md). A task's root goes in as a
:class:`StartedRoot`, read live by the pipeline with the identity it started
with; late work that started after its root ended as a :func:`compact_end`
tuple carrying its task's stamp. :mod:`.sdkspans` reads them all.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import LIMIT_NOTE, SpanData


def events_of(span: Any) -> tuple[Any, ...] | None:
    """The span's SDK events now, oldest first; None when not a BoundedList."""
    evs: Any = span._events
    if type(evs) is not BoundedList:
        return None
    dq = getattr(evs, "_dq", None)  # private to the SDK (not in its stubs)
    if type(dq) is not deque:
        return None
    return tuple(dq) if dq else ()


def compact_end(span: Any) -> Any:
    """An ended span as a plain tuple of what :func:`light_span` reads (so
    that :func:`spanvisor.otel.stamp.with_stamp` can add its task's stamp
    without touching the span), or the span when it is not the SDK's usual
    shape."""
    if type(span) is not ReadableSpan:
        return span
    try:
        attrs = span._attributes
        if type(attrs) is not BoundedAttributes:
            return span
        d = attrs._dict
        evs = events_of(span)
        dropped = attrs.dropped
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
        dropped,
    )


class Ended:
    """A :func:`compact_end` tuple read as an ended SDK span (for from_sdk)."""

    __slots__ = (
        "_ctx",
        "attributes",
        "dropped_attributes",
        "end_time",
        "events",
        "name",
        "parent",
        "resource",
        "start_time",
        "status",
    )

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
            self.dropped_attributes,
        ) = t

    def get_span_context(self) -> Any:
        return self._ctx


class StartedRoot:
    """A task root as the processor hands its start over: the live SDK span
    and its attributes as they were when it started (``kept``: the processor
    saw them in ``on_start``).

    Why: the pipeline reads the root later, on its own thread, and an agent
    that gives the root more attributes than the span's limit meanwhile has
    made the SDK drop the oldest, its task's name and the processor's stamp
    first. Read through this, a root whose limit dropped attributes keeps
    the identity it started with (``conventions.IDENTITY_KEYS``), so the
    task starts, is polled and ends as the task it is. Reads like an SDK
    span where the pipeline reads one (:func:`spanvisor.spans.data.from_sdk`).
    """

    __slots__ = ("kept", "span")

    def __init__(self, span: Any, kept: dict[str, Any]) -> None:
        self.span = span
        self.kept = kept

    def read(self, data: SpanData) -> SpanData:
        """``data``, read from the live span, with the identity it lost put back."""
        if not data.dropped_attributes:
            return data
        kept = self.kept
        lost: dict[str, Any] = {k: kept[k] for k in cv.IDENTITY_KEYS if k in kept and k not in data.attributes}
        if lost:
            data.attributes = {**data.attributes, **lost}
            # Noted once, with the root's end (its TaskFinished).
            data.notes = tuple(n for n in data.notes if LIMIT_NOTE not in n)
        return data

    def get_span_context(self) -> Any:
        return self.span.get_span_context()

    @property
    def parent(self) -> Any:
        return self.span.parent

    @property
    def name(self) -> str:
        return str(self.span.name)

    @property
    def start_time(self) -> int | None:
        return self.span.start_time  # type: ignore[no-any-return]

    @property
    def end_time(self) -> int | None:
        return self.span.end_time  # type: ignore[no-any-return]

    @property
    def attributes(self) -> Any:
        # Copied first, the dropped count read after: the agent's thread may
        # be writing the root meanwhile, and a copy taken after its limit
        # dropped the identity then always sees the count that says so.
        # (Checking the count first and returning the live view let a copy
        # made later miss the identity with nothing put back: the task was
        # lost.) No copy falls between the SDK's drop of the oldest key and
        # its ``dropped += 1``: both happen in one section under the
        # attributes' lock, and ``dict`` of the live view takes the keys
        # through ``BoundedAttributes.__iter__``, which lists them under that
        # lock while the span is open (a value read after it whose key went
        # meanwhile raises KeyError: retried). Once ended the attributes are
        # immutable: nothing drops.
        attrs = self.span.attributes
        for _ in range(3):  # the agent's thread may write meanwhile (as data._copy retries)
            try:
                now = dict(attrs) if attrs else {}
                break
            except (RuntimeError, KeyError):  # a key dropped between the SDK's keys and its read
                continue
        else:
            now = {}
        if not getattr(self.span, "dropped_attributes", 0):
            return now  # the usual root
        kept = self.kept
        return {**now, **{k: kept[k] for k in cv.IDENTITY_KEYS if k in kept and k not in now}}

    @property
    def dropped_attributes(self) -> int:
        return 0  # what the root's attributes lost is put back (see attributes)

    @property
    def events(self) -> Any:
        return self.span.events

    @property
    def status(self) -> Any:
        return self.span.status

    @property
    def resource(self) -> Any:
        return self.span.resource
