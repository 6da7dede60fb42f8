"""The receiver's decoder walks only the spans of a scope whose bytes may hold
a known key (``scan.keyed_spans``); every span must still come out as if
each had been walked: keyed or failed spans in full, with exactly the keys
the tracker reads, the rest as id links.

Scopes here mix plain spans (with ``user_agent.original``, marker text in
values), keyed spans, failed ones, results and known events, with marker
text in the scope's name and schema URL, at densities on both sides of the
point where a scope is walked whole."""

from __future__ import annotations

import random
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.scan import keyed_spans, scope_bytes
from spanvisor.spans.conventions import EVENT_CHECKPOINT, KNOWN_KEYS, READ_KEYS, RESULT_PREFIX

PLAIN = [
    ("http.request.method", "GET"),
    ("url.full", "https://example.com/agent.v1/gen_ai.x"),  # marker text inside a value
    ("user_agent.original", "python-httpx/0.27"),
    ("db.system", "postgresql"),
]
KEYED = [
    ("agent.task.id", "t-1"),
    ("agent.id", "writer"),
    ("gen_ai.request.model", "m"),
    ("gen_ai.usage.input_tokens", 7),
]


def _span(rnd: random.Random, n: int, kind: str) -> Span:
    sp = Span(
        trace_id=bytes([1] * 15 + [n % 250 + 1]),
        span_id=n.to_bytes(8, "big"),
        name=f"s{n}",
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_000_000_100,
    )
    pairs = list(PLAIN[: rnd.randint(0, len(PLAIN))])
    if kind == "keyed":
        pairs += KEYED[: rnd.randint(1, len(KEYED))]
    elif kind == "result":
        pairs.append((RESULT_PREFIX + "score", 3))
    for key, value in pairs:
        kv = sp.attributes.add()
        kv.key = key
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value
    if kind == "failed":
        sp.status.code = Status.STATUS_CODE_ERROR
    elif kind == "event":
        sp.events.add(name=EVENT_CHECKPOINT, time_unix_nano=sp.start_time_unix_nano)
    elif kind == "exception":
        sp.events.add(name="exception", time_unix_nano=sp.start_time_unix_nano)
    return sp


def _expected(sp: Span) -> dict[str, Any] | None:
    keys = {kv.key for kv in sp.attributes}
    keyed = bool(keys & KNOWN_KEYS) or any(e.name == EVENT_CHECKPOINT for e in sp.events)
    failed = sp.status.code == Status.STATUS_CODE_ERROR or any(e.name == "exception" for e in sp.events)
    if not (keyed or failed):
        return None
    out: dict[str, Any] = {}
    for kv in sp.attributes:
        if kv.key in READ_KEYS or kv.key.startswith(RESULT_PREFIX):
            out[kv.key] = kv.value.int_value if kv.value.HasField("int_value") else kv.value.string_value
    return out


def test_only_spans_with_a_marker_are_walked_and_all_decode_as_walked() -> None:
    kinds = ["plain", "keyed", "failed", "result", "event", "exception"]
    for seed in range(300):
        rnd = random.Random(seed)
        req = ExportTraceServiceRequest()
        ss = req.resource_spans.add().scope_spans.add()
        if seed % 3 == 0:
            ss.scope.name = "agent.lib"
        if seed % 4 == 0:
            ss.schema_url = "https://example.com/gen_ai.v1"
        # Mostly plain at even seeds (the scope is split), mostly keyed at odd.
        weights = [8, 1, 1, 1, 1, 1] if seed % 2 == 0 else [1, 8, 1, 1, 1, 1]
        spans = [_span(rnd, n + 1, rnd.choices(kinds, weights)[0]) for n in range(rnd.randint(1, 40))]
        ss.spans.extend(spans)
        decoded = decode_request(req, recv_ns=1_700_000_000_000_001_000)
        assert decoded.rejected == 0
        expected = [_expected(sp) for sp in spans]
        assert decoded.keyed == sum(e is not None for e in expected), seed
        for sp, got, want in zip(spans, decoded.spans, expected, strict=True):
            assert got.span_id == sp.span_id.hex()
            assert dict(got.attributes) == (want or {}), seed


def test_a_scope_of_plain_spans_is_ruled_out_and_a_keyed_one_is_found() -> None:
    rnd = random.Random(1)
    ss = ExportTraceServiceRequest().resource_spans.add().scope_spans.add()
    ss.spans.extend(_span(rnd, n + 1, "plain") for n in range(10))
    for sp in ss.spans:  # user_agent.original only: no marker of its own
        del sp.attributes[:]
        sp.attributes.add(key="user_agent.original").value.string_value = "curl"
    assert keyed_spans(ss.SerializeToString(), 10) == set()
    ss.spans[6].attributes.add(key="agent.id").value.string_value = "writer"
    assert keyed_spans(ss.SerializeToString(), 10) == {6}
    # Marker text in a value only means "walk to be sure".
    ss.spans[2].attributes.add(key="note").value.string_value = "see gen_ai.usage"
    assert keyed_spans(ss.SerializeToString(), 10) == {2, 6}


def test_scopes_are_scanned_as_received_and_decode_alike() -> None:
    rnd = random.Random(7)
    req = ExportTraceServiceRequest()
    for r in range(3):
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        for _ in range(r + 1):
            ss = rs.scope_spans.add()
            ss.scope.name = "agent.lib"
            kinds = ["plain", "keyed", "failed", "event"]
            ss.spans.extend(_span(rnd, 100 * r + n + 1, rnd.choice(kinds)) for n in range(rnd.randint(0, 12)))
    body = req.SerializeToString()
    assert scope_bytes(body) == [[ss.SerializeToString() for ss in rs.scope_spans] for rs in req.resource_spans]
    parsed = ExportTraceServiceRequest.FromString(body)
    with_body = decode_request(parsed, recv_ns=1_700_000_000_000_001_000, body=body)
    without = decode_request(parsed, recv_ns=1_700_000_000_000_001_000)
    assert with_body.spans == without.spans and with_body.keyed == without.keyed
    # A body this walk does not expect (a field numbered above 15) is serialised instead.
    assert scope_bytes(b"\x82\x01\x00") is None
