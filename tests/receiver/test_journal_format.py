"""The journal keeps request bodies as received, and still replays entries in
the format from before (keyed spans as ``TracesData`` plus 33-byte id links).

Either way a replayed entry must give the tracker what the live request
gave it: the same spans (new format), or the same events (old format, whose
spans come back keyed first, links after).
"""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path

from agent_traces import request_for, task_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from spanvisor.events import Event
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.ingest import Ingest
from spanvisor.receiver.journal import BODY, GZIP, ZLIB, SpanJournal, body_of
from spanvisor.spans.conventions import KNOWN_EVENTS, KNOWN_KEYS
from spanvisor.spans.data import SpanData
from spanvisor.tracking.tracker import TaskTracker


def _old_format(req: ExportTraceServiceRequest) -> tuple[bytes, bytes]:
    """What the receiver journaled before bodies were kept: keyed (or failed)
    spans with their resource and scope, and trace 16 + span 8 + parent 8 +
    remote 1 bytes for every other span."""
    keyed = TracesData()
    links = bytearray()
    for rs in req.resource_spans:
        out_rs = None
        for ss in rs.scope_spans:
            out_ss = None
            for span in ss.spans:
                known = any(kv.key in KNOWN_KEYS for kv in span.attributes) or any(
                    e.name in KNOWN_EVENTS or e.name == "exception" for e in span.events
                )
                if known or span.status.code == Status.STATUS_CODE_ERROR:
                    if out_rs is None:
                        out_rs = keyed.resource_spans.add()
                        out_rs.resource.CopyFrom(rs.resource)
                    if out_ss is None:
                        out_ss = out_rs.scope_spans.add()
                        out_ss.scope.CopyFrom(ss.scope)
                    out_ss.spans.append(span)
                else:
                    links += span.trace_id + span.span_id + (span.parent_span_id or bytes(8))
                    links.append(1 if span.flags & 0x200 else 0)
    return keyed.SerializeToString(), bytes(links)


def _events(spans: list[SpanData]) -> list[Event]:
    tracker = TaskTracker()
    out: list[Event] = []
    for span in spans:
        out.extend(tracker.span_ended(span))
    return out


def _roundtrip(tmp_path: Path, entries: list[tuple[bytes, bytes, bool]], recv_ns: int) -> list[list[SpanData]]:
    async def run() -> list[list[SpanData]]:
        journal = SpanJournal(tmp_path / "journal.db", 10**9)
        await asyncio.to_thread(journal.open)
        try:
            for keyed, links, is_body in entries:
                if is_body:
                    await journal.append_body(keyed, recv_ns)
                else:
                    await journal.append(keyed, links, recv_ns)
            rows = journal.read(0, 0)
        finally:
            journal.close()
        assert len(rows) == len(entries)
        return [Ingest.spans_of(row) for row in rows]

    return asyncio.run(run())


def test_bodies_are_kept_compressed_and_replay_as_the_live_spans(tmp_path: Path) -> None:
    req = request_for(task_spans(3, seed=11))
    body = req.SerializeToString()
    recv_ns = time.time_ns()
    live = decode_request(req, recv_ns=recv_ns).spans
    plain, gzipped = _roundtrip(tmp_path, [(body, b"", True), (gzip.compress(body), b"", True)], recv_ns)
    assert plain == live
    assert gzipped == live


def test_how_an_entry_is_stored(tmp_path: Path) -> None:
    body = request_for(task_spans(2, seed=3)).SerializeToString()
    gz = gzip.compress(body)

    async def stored() -> list[bytes]:
        journal = SpanJournal(tmp_path / "journal.db", 10**9)
        await asyncio.to_thread(journal.open)
        try:
            await journal.append_body(body)
            await journal.append_body(gz)
            return [row[2] for row in journal.read(0, 0)]
        finally:
            journal.close()

    compressed, as_received = asyncio.run(stored())
    assert compressed[:2] == BODY + ZLIB and len(compressed) < len(body) / 3
    assert as_received == BODY + GZIP + gz  # gzip is kept as it came
    assert body_of(compressed) == body_of(as_received) == body
    # Protobuf never starts with a zero byte: an entry from before is not a body.
    keyed, _ = _old_format(ExportTraceServiceRequest.FromString(body))
    assert body_of(keyed) is None and body_of(b"") is None


def test_entries_from_before_still_replay_to_the_same_events(tmp_path: Path) -> None:
    req = request_for(task_spans(4, seed=5))
    recv_ns = time.time_ns()
    keyed, links = _old_format(req)
    assert keyed and links  # both parts present: keyed spans and plain ones
    [replayed] = _roundtrip(tmp_path, [(keyed, links, False)], recv_ns)
    live = decode_request(req, recv_ns=recv_ns).spans
    assert len(replayed) == len(live)
    assert sorted(e.event_id for e in _events(replayed)) == sorted(e.event_id for e in _events(live))
    finished = [e.task for e in _events(live) if e.kind == "TaskFinished"]
    assert len(finished) == 4
    assert [e.task for e in _events(replayed) if e.kind == "TaskFinished"] == finished
