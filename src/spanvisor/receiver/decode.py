"""OTLP protobuf to :class:`SpanData`: only what the tracker reads becomes Python.

Most spans (HTTP calls, database queries, framework internals) carry no
key the conventions know: the tracker only needs their ids to connect a
keyed descendant to its task, so they become id links with no attribute.
Of a keyed span, only the keys the tracker reads (:data:`SPAN_KEYS`, which
is ``conventions.READ_KEYS``) and its results (``agent.result.*``) become
Python values; the rest (prompts, completions, often most of the bytes)
stay in the protobuf. Events likewise: ``agent.checkpoint`` and
``agent.artifact`` whole, ``exception`` with its three ``exception.*``
keys, no other. Of the resource, only ``service.name`` (FIELD-NOTES: a
naive walk of every attribute ran at ~54k spans/s against ~700k).

A span is known keyed while walking its keys, never by serialising it
again; one whose bytes cannot hold a known key skips even that
(:func:`.scan.keyed_spans`). A request's spans leave in the order they came
(the skew rule: docs/reference/conventions.md#clock-skew), one resource's scopes
merged back into end order (:mod:`.endorder`). The journal keeps request
bodies as received, so a replay runs this same function: the same
:class:`SpanData` in the same order, times clamped against the receive time
the journal keeps.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from spanvisor.clis import registry
from spanvisor.receiver.endorder import in_end_order
from spanvisor.receiver.scan import keyed_spans, scope_bytes
from spanvisor.receiver.vocabulary import MAX_STRING, SHARED_KEYS, VOCABULARY, limit_of
from spanvisor.spans.conventions import (
    EVENT_EXCEPTION,
    KNOWN_EVENTS,
    KNOWN_KEYS,
    READ_KEYS,
    RESULT_PREFIX,
    SERVICE_NAME,
    TASK_ROOT,
)
from spanvisor.spans.data import MAX_AHEAD_NS, SpanData, SpanEventData, clamp_times, limited

_ERROR = Status.STATUS_CODE_ERROR

# W3C/OTLP span flags: bit 8 says the parent is known, bit 9 that it is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
# Journal entries from before bodies were kept: 33 bytes of ancestry a span,
# trace 16 + span 8 + parent 8 (zeros: none) + remote flag 1.
LINK_SIZE = 33
# Shared by every ancestry-only span: one object instead of two dicts a span.
_EMPTY: Mapping[str, Any] = MappingProxyType({})

# The span attributes the tracker reads (spanvisor.tracking): a key it starts
# to read must be in READ_KEYS, or the receiver path never sees it (the
# property tests in tests/core compare the paths).
SPAN_KEYS = READ_KEYS
# What the tracker reads of an exception event (tracking/outcome.py).
EXCEPTION_KEYS = frozenset({"exception.type", "exception.message", "exception.stacktrace"})
_RESOURCE_KEYS = frozenset({SERVICE_NAME})
_SHARED_ANY = SHARED_KEYS | _RESOURCE_KEYS  # shared where attributes() reads them: events, resources
_shared = VOCABULARY.table.get
_share = VOCABULARY.share


@functools.cache
def cli_services() -> frozenset[str]:
    """Every coding-agent CLI's ``service.name`` (its adapter's): their own
    spans are set aside, as their log records (or spans read as records)
    say it all. Read once, at the first keyed span (not at import: an
    installed adapter loads then)."""
    return frozenset(s for a in registry.every() for s in a.services)


@dataclass(slots=True)
class Decoded:
    spans: list[SpanData] = field(default_factory=list)
    keyed: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    # When the request arrived: times are clamped against it, the journal keeps it.
    recv_ns: int = 0
    # Spans whose times were out of range and clamped, and the first such note.
    clamped: int = 0
    clamp_note: str | None = None
    ignored: int = 0  # a coding-agent CLI's own spans, set aside (read from its log records)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def reject(self, n: int, why: str) -> None:
        self.rejected += n
        if why not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(why)


def any_value(v: Any, limit: int = MAX_STRING) -> Any:
    """An OTLP AnyValue as a plain Python value (None when unset), strings cut at ``limit``."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        s: str = v.string_value
        return s if len(s) <= limit else s[:limit]
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "array_value":
        items = [any_value(x) for x in v.array_value.values]
        if all(x is None or isinstance(x, str | bool | int | float) for x in items):
            return tuple(items)
        return _json(items)
    if kind == "kvlist_value":
        return _json({kv.key: any_value(kv.value) for kv in v.kvlist_value.values})
    if kind == "bytes_value":
        return bytes(v.bytes_value).hex()
    return None


def _json(v: Any) -> str:
    def default(x: Any) -> Any:
        return list(x) if isinstance(x, tuple) else str(x)

    def clean(x: Any) -> Any:
        # Strict JSON has no NaN/Infinity; keep them readable as strings.
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        if isinstance(x, list | tuple):
            return [clean(i) for i in x]
        if isinstance(x, dict):
            return {k: clean(i) for k, i in x.items()}
        return x

    s = json.dumps(clean(v), default=default, separators=(",", ":"))
    return s if len(s) <= MAX_STRING else s[:MAX_STRING]


def attributes(kvs: Iterable[Any], keys: frozenset[str] | None = None) -> dict[str, Any]:
    """Attributes as a dict: all of them, or only those in ``keys``."""
    out: dict[str, Any] = {}
    for kv in kvs:
        key = kv.key
        if keys is not None and key not in keys:
            continue
        v = kv.value
        value = v.string_value  # most values: a non-empty string, read without asking its kind
        if value:
            if len(value) > MAX_STRING:
                value = value[: limit_of(key)]
            out[key] = _share(value) if key in _SHARED_ANY else value
            continue
        value = any_value(v, limit_of(key))
        if value is not None:
            out[key] = _share(value) if key in _SHARED_ANY and type(value) is str else value
    return out


# Each key the tracker reads -> _KEYED if it makes a span keyed on its own, plus
# _SHARED if its string values repeat across tasks (one copy in .vocabulary).
_KEYED = 1
_SHARED = 2
_READ = {k: (_KEYED if k in KNOWN_KEYS else 0) | (_SHARED if k in SHARED_KEYS else 0) for k in SPAN_KEYS}


def _read_keys(span: Any, events: Any) -> dict[str, Any] | None:
    """The attributes the tracker reads of a span in a scope that may be
    keyed (``events``: its events, read once by the caller); None when it
    carries no known key, no known event and did not fail (it is then an
    id link)."""
    attrs: dict[str, Any] = {}
    keyed = False
    results = False
    read = _READ.get
    for kv in span.attributes:
        key = kv.key
        flags = read(key)
        if flags is None:
            # A task's results (agent.result.*) are read on its root: kept,
            # and like the budgets they make no span keyed on their own.
            if not key.startswith(RESULT_PREFIX):
                continue
            flags = 0
            results = True
        if flags & _KEYED:
            keyed = True
        v = kv.value
        # Most values are non-empty strings: read one without asking which
        # kind it is first (an empty one, or another kind, is any_value's).
        value = v.string_value
        if value:
            if len(value) > MAX_STRING:
                value = value[: limit_of(key)]
            elif flags & _SHARED:
                value = _shared(value) or _share(value)
        else:
            value = any_value(v)
        if value is not None:
            attrs[key] = value
    failed = span.status.code == _ERROR
    if events:
        for ev in events:
            name = ev.name
            if name in KNOWN_EVENTS:
                keyed = True
            elif name == EVENT_EXCEPTION:
                failed = True
    if results and not keyed and span.dropped_attributes_count:
        # Results with their root's identity dropped by the sender's limit
        # (spans.data.limited reads it as a task root).
        keyed = True
    return attrs if keyed or failed else None


def _failed(span: Any, events: Any) -> bool:
    """A failed span, or one that recorded an exception: its status and
    exception event may be the task's reported error (the exporter path reads
    them too), so it is decoded whatever its keys."""
    if span.status.code == _ERROR:
        return True
    return bool(events) and any(ev.name == EVENT_EXCEPTION for ev in events)


def _events(events: Any, now: int) -> tuple[SpanEventData, ...]:
    out: list[SpanEventData] = []
    latest = now + MAX_AHEAD_NS
    for e in events:
        name = e.name
        if name in KNOWN_EVENTS:
            attrs = attributes(e.attributes)  # a checkpoint keeps its extra attributes
        elif name == EVENT_EXCEPTION:
            attrs = attributes(e.attributes, EXCEPTION_KEYS)
        else:
            continue  # the tracker reads no other event
        t = e.time_unix_nano
        out.append(SpanEventData(name, t if 0 <= t <= latest else now, attrs))  # clamp_time, inline
    return tuple(out)


def _full(
    span: Any,
    trace_id: str,
    span_id: str,
    parent: bytes,
    attrs: dict[str, Any],
    resource: Mapping[str, Any],
    out: Decoded,
    events: Any,
) -> SpanData:
    status = span.status
    error = status.code == _ERROR
    start, end = span.start_time_unix_nano, span.end_time_unix_nano or None
    now = out.recv_ns
    notes: tuple[str, ...] = ()
    if start > now + MAX_AHEAD_NS or (end is not None and end > now + MAX_AHEAD_NS):
        start, end, note = clamp_times(start, end, now)
        notes = _clamped(out, trace_id, span_id, note)
    dropped = span.dropped_attributes_count
    name = span.name  # a task's name when it names none: shared as the names are
    name = _shared(name) or _share(name)
    read: Mapping[str, Any] = attrs
    if dropped:
        read, why = limited(attrs, name, dropped)
        notes = (*notes, why)
    return SpanData(
        trace_id,
        span_id,
        parent.hex() if parent else None,
        name,
        start,
        end,
        read,
        _events(events, now) if events else (),
        error,
        status.message or None if error else None,
        bool(span.flags & _IS_REMOTE),
        resource,
        notes,
        dropped,
    )


def _clamped(out: Decoded, trace_id: str, span_id: str, note: str | None) -> tuple[str, ...]:
    out.clamped += 1
    if out.clamp_note is None:
        out.clamp_note = f"trace {trace_id} span {span_id}: {note}"
    return (note,) if note else ()


def decode_request(
    req: ExportTraceServiceRequest | TracesData, recv_ns: int | None = None, body: bytes | None = None
) -> Decoded:
    """Every valid span of ``req``; the invalid ones are counted with a reason.

    ``recv_ns``: when the request arrived (now by default; the journal's
    time on replay), the clock span times are clamped against. ``body``:
    the protobuf ``req`` was parsed from, if at hand (its scopes are
    scanned as received rather than serialised again).
    """
    out = Decoded(recv_ns=recv_ns or time.time_ns())
    late = out.recv_ns + MAX_AHEAD_NS
    spans = out.spans
    append = spans.append
    hex_of: dict[bytes, str] = {}  # trace ids repeat across a request's spans
    received = scope_bytes(body) if body is not None else None
    resources = req.resource_spans
    if received is not None and len(received) != len(resources):
        received = None
    for r, rs in enumerate(resources):
        resource: Mapping[str, Any] | None = None
        scopes = rs.scope_spans
        as_received = received[r] if received is not None and len(received[r]) == len(scopes) else None
        bounds: list[int] | None = [] if len(scopes) > 1 else None  # where each scope begins
        for s, ss in enumerate(scopes):
            if bounds is not None:
                bounds.append(len(spans))
            # Instrumentation libraries get their own scope, so a whole scope
            # of HTTP or database spans is usually ruled out in one scan;
            # where keyed and plain spans share a scope, the same scan says
            # which spans to walk.
            scope_spans = ss.spans
            serialized = as_received[s] if as_received is not None else ss.SerializeToString()
            walk = keyed_spans(serialized, len(scope_spans))
            for index, span in enumerate(scope_spans):
                tid = span.trace_id
                sid = span.span_id
                parent = span.parent_span_id
                if len(tid) != 16 or tid == _ZERO_TRACE:
                    out.reject(1, "invalid trace_id (must be 16 bytes, not all zero)")
                    continue
                if len(sid) != 8 or sid == _ZERO_SPAN:
                    out.reject(1, "invalid span_id (must be 8 bytes, not all zero)")
                    continue
                if parent and (len(parent) != 8 or parent == _ZERO_SPAN):
                    out.reject(1, "invalid parent_span_id (must be empty or 8 bytes)")
                    continue
                trace_hex = hex_of.get(tid)
                if trace_hex is None:
                    trace_hex = hex_of[tid] = tid.hex()
                events = span.events
                if walk is None or index in walk:
                    attrs = _read_keys(span, events)
                elif _failed(span, events):
                    attrs = attributes(span.attributes, SPAN_KEYS)
                else:
                    attrs = None
                if attrs is not None:
                    if resource is None:
                        resource = attributes(rs.resource.attributes, _RESOURCE_KEYS) or _EMPTY
                    if resource.get(SERVICE_NAME) in cli_services() and TASK_ROOT not in attrs:
                        # A span a CLI sent itself, not one spanvisor made of
                        # its records (those carry a task root stamp).
                        out.ignored += 1
                        continue
                    append(_full(span, trace_hex, sid.hex(), parent, attrs, resource, out, events))
                    out.keyed += 1
                    continue
                start, end = span.start_time_unix_nano, span.end_time_unix_nano or None
                notes: tuple[str, ...] = ()
                if start > late or (end is not None and end > late):
                    start, end, note = clamp_times(start, end, out.recv_ns)
                    notes = _clamped(out, trace_hex, sid.hex(), note)
                append(
                    SpanData(
                        trace_hex,
                        sid.hex(),
                        parent.hex() if parent else None,
                        span.name,
                        start,
                        end,
                        _EMPTY,
                        (),
                        False,
                        None,
                        bool(span.flags & _IS_REMOTE),
                        _EMPTY,
                        notes,
                    )
                )
        if bounds is not None:
            in_end_order(spans, bounds)
    return out


def decode_links(blob: bytes, time_ns: int) -> list[SpanData]:
    """Ancestry-only spans back from the compact form of journal entries
    written before bodies were kept as received (still replayed)."""
    out: list[SpanData] = []
    for off in range(0, len(blob) - LINK_SIZE + 1, LINK_SIZE):
        parent = blob[off + 24 : off + 32]
        out.append(
            SpanData(
                blob[off : off + 16].hex(),
                blob[off + 16 : off + 24].hex(),
                None if parent == _ZERO_SPAN else parent.hex(),
                "",
                time_ns,
                time_ns,
                _EMPTY,
                (),
                False,
                None,
                blob[off + 32] == 1,
                _EMPTY,
            )
        )
    return out
