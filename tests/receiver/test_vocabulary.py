"""The decoder keeps one copy of the names tasks repeat (``receiver.vocabulary``),
in a table that stays bounded whatever a client sends."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spanvisor.receiver.decode import MAX_STRING, decode_request
from spanvisor.receiver.vocabulary import MAX_ENTRIES, MAX_LENGTH, SHARED_KEYS, VOCABULARY, Vocabulary
from spanvisor.spans.conventions import (
    AGENT_ID,
    EVENT_CHECKPOINT,
    GEN_AI_REQUEST_MODEL,
    MESSAGE,
    READ_KEYS,
    SERVICE_NAME,
    STEP,
    TASK_ID,
)
from spanvisor.spans.data import SpanData


def _request(n: int, pairs: list[tuple[str, str]], service: str = "svc", step: str = "plan") -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = SERVICE_NAME, service
    ss = rs.scope_spans.add()
    sp: Span = ss.spans.add(
        trace_id=bytes(15) + bytes([n % 250 + 1]),
        span_id=(n + 1).to_bytes(8, "big"),
        name="chat m",
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_000_000_100,
    )
    for key, value in pairs:
        kv = sp.attributes.add()
        kv.key, kv.value.string_value = key, value
    ev = sp.events.add(name=EVENT_CHECKPOINT, time_unix_nano=sp.start_time_unix_nano)
    kv = ev.attributes.add()
    kv.key, kv.value.string_value = STEP, step
    return bytes(req.SerializeToString())


def _decode(body: bytes) -> SpanData:
    return decode_request(ExportTraceServiceRequest.FromString(body), recv_ns=1_700_000_000_000_000_000).spans[0]


def test_every_shared_key_is_one_the_tracker_reads() -> None:
    assert SHARED_KEYS <= READ_KEYS
    assert TASK_ID not in SHARED_KEYS and MESSAGE not in SHARED_KEYS  # ids and messages are unique


def test_two_tasks_share_their_names_and_keep_their_ids() -> None:
    pairs = [(TASK_ID, "t-1"), (AGENT_ID, "writer"), (GEN_AI_REQUEST_MODEL, "claude-sonnet-4"), (MESSAGE, "hi")]
    a = _decode(_request(1, pairs))
    b = _decode(_request(2, [(TASK_ID, "t-2"), *pairs[1:]]))
    for key in (AGENT_ID, GEN_AI_REQUEST_MODEL):
        assert a.attributes[key] is b.attributes[key]
    assert a.attributes[MESSAGE] == b.attributes[MESSAGE]
    assert a.attributes[MESSAGE] is not b.attributes[MESSAGE]
    assert a.name is b.name
    assert a.resource[SERVICE_NAME] is b.resource[SERVICE_NAME]
    assert a.events[0].attributes[STEP] is b.events[0].attributes[STEP]


def test_unique_hostile_values_never_grow_the_table_past_its_bound() -> None:
    """A client sending a new agent name, model, service and span name on
    every span: the table fills and starts again, and never holds more than
    MAX_ENTRIES strings; the values come through unchanged."""
    before = VOCABULARY.emptied
    for n in range(MAX_ENTRIES + 500):
        pairs = [(TASK_ID, f"t-{n}"), (AGENT_ID, f"agent-{n}"), (GEN_AI_REQUEST_MODEL, f"model-{n}")]
        span = _decode(_request(n, pairs, service=f"svc-{n}", step=f"step-{n}"))
        assert span.attributes[AGENT_ID] == f"agent-{n}"
        assert span.attributes[GEN_AI_REQUEST_MODEL] == f"model-{n}"
        assert span.resource[SERVICE_NAME] == f"svc-{n}"
        assert len(VOCABULARY.table) <= MAX_ENTRIES
    assert VOCABULARY.emptied > before


def test_a_long_value_is_never_kept_and_still_cut_at_the_decoders_limit() -> None:
    vocab = Vocabulary()
    long = "x" * (MAX_LENGTH + 1)
    assert vocab.share(long) is long
    assert not vocab.table
    huge = "m" * (MAX_STRING + 10)
    span = _decode(_request(1, [(TASK_ID, "t"), (GEN_AI_REQUEST_MODEL, huge)]))
    assert span.attributes[GEN_AI_REQUEST_MODEL] == huge[:MAX_STRING]
    assert len(VOCABULARY.table) <= MAX_ENTRIES


def test_a_full_table_starts_again() -> None:
    vocab = Vocabulary()
    for n in range(MAX_ENTRIES):
        vocab.share(f"v{n}")
    assert len(vocab.table) == MAX_ENTRIES and vocab.emptied == 0
    first = vocab.share("new")
    assert vocab.table == {"new": "new"} and vocab.emptied == 1
    assert vocab.share("ne" + "w") is first
