"""OTLP protobuf to :class:`SpanData`, with a fast path for ordinary spans.

Most spans in an agent's trace (HTTP calls, database queries, framework
internals) carry no key the conventions know. The tracker only needs their
``(trace_id, span_id, parent_id)`` to connect a keyed descendant to its task,
so those spans skip the attribute walk entirely: checking the keys is one
set lookup per attribute, building the dict is what costs (FIELD-NOTES: a
naive walk of every attribute ran at ~54k spans/s against ~700k for the
parse alone).

While walking, the decoder also builds what the journal stores: a
``TracesData`` holding only the keyed spans (with their resource and scope),
and a compact blob of ancestry links for the rest. Replaying the journal runs
both back through the same functions, so a replayed span is the very same
:class:`SpanData` the live path produced. Times are clamped against the
receive time (:func:`spanvisor.spans.clamp_times`), which the journal keeps,
so a replayed span's clamped times are the live ones too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from spanvisor.spans.conventions import EVENT_EXCEPTION, KNOWN_EVENTS, KNOWN_KEYS
from spanvisor.spans.data import MAX_AHEAD_NS, SpanData, SpanEventData, clamp_time, clamp_times

_ERROR = Status.STATUS_CODE_ERROR
# W3C/OTLP span flags: bit 8 says the parent is known, bit 9 that it is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
LINK_SIZE = 33  # trace 16 + span 8 + parent 8 (zeros: none) + remote flag 1
# Attribute strings longer than this are cut here; the tracker clamps again
# to its own limits, this only bounds the memory one request can pin.
MAX_STRING = 64 * 1024
# Shared by every ancestry-only span: one object instead of two dicts a span.
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True)
class Decoded:
    spans: list[SpanData] = field(default_factory=list)
    keyed: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    # What the journal stores: keyed spans as OTLP, the rest as links.
    journal_keyed: TracesData = field(default_factory=TracesData)
    journal_links: bytearray = field(default_factory=bytearray)
    # When the request arrived: times are clamped against it, the journal keeps it.
    recv_ns: int = 0
    # Spans whose times were out of range and clamped, and the first such note.
    clamped: int = 0
    clamp_note: str | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def reject(self, n: int, why: str) -> None:
        self.rejected += n
        if why not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(why)


def any_value(v: Any) -> Any:
    """An OTLP AnyValue as a plain Python value (None when unset)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        s: str = v.string_value
        return s if len(s) <= MAX_STRING else s[:MAX_STRING]
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


def attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        value = any_value(kv.value)
        if value is not None:
            out[kv.key] = value
    return out


# The first dotted part of every known key and event name ("agent.",
# "gen_ai.", ...), as raw bytes. Protobuf stores strings verbatim, preceded
# by their length, so a serialized span in which no marker starts a string
# cannot carry a known key: a few C-level ``find`` calls replace the Python
# walk over its attributes. A hit preceded by a word character is part of a
# longer name ("user_agent.original") and does not count; any other hit only
# means "walk to be sure" (a value may contain the text).
_KNOWN = KNOWN_KEYS | KNOWN_EVENTS
_MARKERS = tuple(sorted({k.split(".", 1)[0].encode() + b"." for k in _KNOWN}))
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
# A key's length byte must never look like a word character, or the check
# above could skip it: true while every known name is shorter than ord("-").
assert max(len(k) for k in _KNOWN) < ord("-")


def may_be_keyed(serialized: bytes) -> bool:
    for marker in _MARKERS:
        if marker not in serialized:
            continue
        # "user_agent.original" is on most HTTP spans: rule out the
        # "_"-prefixed hits in C before looking at each hit in Python.
        if serialized.count(marker) == serialized.count(b"_" + marker):
            continue
        i = serialized.find(marker)
        while i >= 0:
            if i == 0 or serialized[i - 1] not in _WORD:
                return True
            i = serialized.find(marker, i + 1)
    return False


def _is_keyed(span: Any) -> bool:
    if not may_be_keyed(span.SerializeToString()):
        return False
    for kv in span.attributes:
        if kv.key in KNOWN_KEYS:
            return True
    return any(ev.name in KNOWN_EVENTS for ev in span.events)


def _failed(span: Any) -> bool:
    """A failed span, or one that recorded an exception: its status and
    exception event may be the task's reported error (the exporter path reads
    them too), so it is decoded in full whatever its keys."""
    if span.status.code == _ERROR:
        return True
    return bool(span.events) and any(ev.name == EVENT_EXCEPTION for ev in span.events)


def _full(span: Any, trace_id: str, parent: bytes, resource: dict[str, Any], out: Decoded) -> SpanData:
    status = span.status
    error = status.code == _ERROR
    start, end = span.start_time_unix_nano, span.end_time_unix_nano or None
    now = out.recv_ns
    notes: tuple[str, ...] = ()
    if start > now + MAX_AHEAD_NS or (end is not None and end > now + MAX_AHEAD_NS):
        start, end, note = clamp_times(start, end, now)
        notes = _clamped(out, trace_id, span.span_id.hex(), note)
    return SpanData(
        trace_id=trace_id,
        span_id=span.span_id.hex(),
        parent_id=parent.hex() if parent else None,
        name=span.name,
        start_ns=start,
        end_ns=end,
        attributes=attributes(span.attributes),
        events=tuple(
            SpanEventData(e.name, clamp_time(e.time_unix_nano, now), attributes(e.attributes)) for e in span.events
        ),
        error=error,
        status_message=status.message or None if error else None,
        parent_remote=bool(span.flags & _IS_REMOTE),
        resource=resource,
        notes=notes,
    )


def _clamped(out: Decoded, trace_id: str, span_id: str, note: str | None) -> tuple[str, ...]:
    out.clamped += 1
    if out.clamp_note is None:
        out.clamp_note = f"trace {trace_id} span {span_id}: {note}"
    return (note,) if note else ()


def decode_request(
    req: ExportTraceServiceRequest | TracesData, journal: bool = True, recv_ns: int | None = None
) -> Decoded:
    """Every valid span of ``req``; the invalid ones are counted with a reason.

    ``recv_ns``: when the request arrived (now by default; the journal's
    time on replay), the clock span times are clamped against.
    """
    out = Decoded(recv_ns=recv_ns or time.time_ns())
    late = out.recv_ns + MAX_AHEAD_NS
    spans = out.spans
    links = out.journal_links
    for rs in req.resource_spans:
        resource: dict[str, Any] | None = None
        journal_rs: Any = None
        for ss in rs.scope_spans:
            journal_ss: Any = None
            # Instrumentation libraries get their own scope, so a whole scope
            # of HTTP or database spans is usually ruled out in one scan.
            scope_keyed = may_be_keyed(ss.SerializeToString())
            for span in ss.spans:
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
                if (scope_keyed and _is_keyed(span)) or _failed(span):
                    if resource is None:
                        resource = attributes(rs.resource.attributes)
                    spans.append(_full(span, tid.hex(), parent, resource, out))
                    out.keyed += 1
                    if journal:
                        if journal_rs is None:
                            journal_rs = out.journal_keyed.resource_spans.add()
                            journal_rs.resource.CopyFrom(rs.resource)
                        if journal_ss is None:
                            journal_ss = journal_rs.scope_spans.add()
                            journal_ss.scope.CopyFrom(ss.scope)
                        journal_ss.spans.append(span)
                    continue
                remote = bool(span.flags & _IS_REMOTE)
                start, end = span.start_time_unix_nano, span.end_time_unix_nano or None
                notes: tuple[str, ...] = ()
                if start > late or (end is not None and end > late):
                    start, end, note = clamp_times(start, end, out.recv_ns)
                    notes = _clamped(out, tid.hex(), sid.hex(), note)
                spans.append(
                    SpanData(
                        tid.hex(),
                        sid.hex(),
                        parent.hex() if parent else None,
                        span.name,
                        start,
                        end,
                        _EMPTY,
                        (),
                        False,
                        None,
                        remote,
                        _EMPTY,
                        notes,
                    )
                )
                if journal:
                    links += tid
                    links += sid
                    links += parent or _ZERO_SPAN
                    links.append(1 if remote else 0)
    return out


def decode_links(blob: bytes, time_ns: int) -> list[SpanData]:
    """Ancestry-only spans back from the journal's compact form."""
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
