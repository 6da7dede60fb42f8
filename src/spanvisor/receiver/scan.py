"""Which spans of a serialized OTLP scope may carry a known key or event.

The receiver's decoder (:mod:`.decode`) turns a span's attributes into
Python values only when the span may matter to the tracker; walking the
attributes of a span through the protobuf runtime costs about 1 µs an
attribute, so the question is answered on the scope's serialized bytes with
a few C-level searches first.
"""

from __future__ import annotations

from bisect import bisect_right

from spanvisor.spans.conventions import KNOWN_EVENTS, KNOWN_KEYS

# The first dotted part of every known key and event name ("agent.",
# "gen_ai.", ...), as raw bytes. Protobuf stores strings verbatim, preceded
# by their length, so a serialized scope in which no marker starts a string
# cannot carry a known key: a few C-level ``find`` calls replace the Python
# walk over its spans. A hit preceded by a word character is part of a
# longer name ("user_agent.original") and does not count; any other hit only
# means "walk to be sure" (a value may contain the text).
_KNOWN = KNOWN_KEYS | KNOWN_EVENTS
_MARKERS = tuple(sorted({k.split(".", 1)[0].encode() + b"." for k in _KNOWN}))
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
# A key's length byte must never look like a word character, or the check
# above could skip it: true while every known name is shorter than ord("-").
assert max(len(k) for k in _KNOWN) < ord("-")


def _delimited(buf: bytes, lo: int, hi: int, tag: int) -> list[tuple[int, int]] | None:
    """The (start, end) of every length-delimited field ``tag`` (a one-byte
    tag) in ``buf[lo:hi]``, a serialized message, in order; None for
    anything this walk does not expect."""
    out: list[tuple[int, int]] = []
    i = lo
    try:
        while i < hi:
            t = buf[i]
            i += 1
            if t & 0x80:  # a field number above 15: not one of ours
                return None
            wire = t & 7
            if wire == 2:
                b = buf[i]
                i += 1
                size, shift = b & 0x7F, 7
                while b & 0x80:
                    b = buf[i]
                    i += 1
                    size |= (b & 0x7F) << shift
                    shift += 7
                if t == tag:
                    out.append((i, i + size))
                i += size
            elif wire == 0:
                while buf[i] & 0x80:
                    i += 1
                i += 1
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            else:
                return None
    except IndexError:
        return None
    return out if i == hi else None


def scope_bytes(body: bytes) -> list[list[bytes]] | None:
    """Each scope's bytes as received, per resource, from an
    ExportTraceServiceRequest (or TracesData) body: what
    ``scope.SerializeToString()`` would give for the scan, without
    serialising again (about 1 µs a span). Repeated fields keep their order on
    the wire, so ``[i][j]`` is ``resource_spans[i].scope_spans[j]``; None
    when the body cannot be split so (the caller serialises)."""
    resources = _delimited(body, 0, len(body), 0x0A)
    if resources is None:
        return None
    out: list[list[bytes]] = []
    for lo, hi in resources:
        scopes = _delimited(body, lo, hi, 0x12)
        if scopes is None:
            return None
        out.append([body[a:b] for a, b in scopes])
    return out


def _span_ends(serialized: bytes) -> list[int] | None:
    """Where each span (ScopeSpans field 2) ends in a serialized scope, in
    order; None for anything this walk does not expect (the caller then
    walks every span's keys, as for a scope with no scan at all)."""
    spans = _delimited(serialized, 0, len(serialized), 0x12)
    return None if spans is None else [end for _, end in spans]


# Markers a span above which a scope is walked whole: an agent span carries
# five to seven (agent.task.id, agent.id, gen_ai.*), a plain one none, and
# splitting a scope costs about 1 µs a span, more than walking saves when
# nearly every span is keyed.
_DENSE = 3
# ... judged on the first 1/_SAMPLE of the scope's bytes: every full pass
# over them (a count) costs about 0.2 µs a span.
_SAMPLE = 8


def keyed_spans(serialized: bytes, n_spans: int) -> set[int] | None:
    """Which spans of a serialized scope may carry a known key or event: the
    indexes of those whose own bytes hold a marker. A span with none is an
    id link unless it failed; an empty set rules out the whole scope. None:
    walk them all (most spans are keyed, or the scope could not be split).

    The project's own traces put plain HTTP and database spans in the same
    scope as agent spans; this spares walking their attributes (about 7 µs
    a span through the protobuf runtime) for one C-level scan of the scope,
    and a Python step only per span that has a marker."""
    ends: list[int] | None = None
    found: set[int] = set()
    find = serialized.find
    sample = len(serialized) // _SAMPLE
    for marker in _MARKERS:
        i = find(marker)
        if i < 0:
            continue
        if serialized.count(marker, 0, sample) * _SAMPLE >= _DENSE * n_spans:
            return None  # most spans are keyed: walking them all costs less
        while i >= 0:
            if i == 0 or serialized[i - 1] not in _WORD:
                if ends is None:  # split only a scope that has a marker
                    ends = _span_ends(serialized)
                    if ends is None or len(ends) != n_spans:
                        return None
                k = bisect_right(ends, i)
                if k >= n_spans:
                    break  # after the last span (schema_url)
                found.add(k)
                if len(found) == n_spans:
                    return found
                i = find(marker, ends[k])  # the rest of this span cannot add
            else:
                i = find(marker, i + 1)
    return found
