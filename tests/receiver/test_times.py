"""Span times out of range are clamped on the way in, so every task can finish.

A root claiming to end at 2^64-1 ns used to be accepted (200) while its
TaskFinished could never be stored ("value out of int64 range"): the task
stayed ``working`` forever.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import TracerProvider
from test_http import post

from conftest import RunningReceiver, finished, local_settings, make_pipeline
from spanvisor.events import TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.decode import decode_request
from spanvisor.spans.data import MAX_AHEAD_NS, clamp_times, from_sdk
from spanvisor.testing import InMemorySink

FAR = 2**64 - 1
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
ROOT = bytes.fromhex("eee19b7ec3c1b174")
CHILD = bytes.fromhex("00f067aa0ba902b7")


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(start_ns: int) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    child = ss.spans.add(trace_id=TRACE, span_id=CHILD, parent_span_id=ROOT, name="GET /x")
    child.start_time_unix_nano, child.end_time_unix_nano = FAR, FAR  # no known key: the fast path
    root = ss.spans.add(trace_id=TRACE, span_id=ROOT, name="invoke_agent bad-clock")
    root.start_time_unix_nano, root.end_time_unix_nano = start_ns, FAR
    root.attributes.extend([_kv("gen_ai.operation.name", "invoke_agent"), _kv("agent.task.id", "T-far")])
    ev = root.events.add(name="agent.checkpoint", time_unix_nano=FAR)
    ev.attributes.append(_kv("agent.message", "from the future"))
    return req


def test_clamp_times() -> None:
    now = 1_700_000_000 * 10**9
    assert clamp_times(now - 5, now - 1, now) == (now - 5, now - 1, None)
    assert clamp_times(now, now + MAX_AHEAD_NS, now)[2] is None  # within the allowed skew
    start, end, note = clamp_times(now - 5, FAR, now)
    assert (start, end) == (now - 5, now) and note is not None and "end time" in note
    start, end, note = clamp_times(FAR, FAR, now)
    assert (start, end) == (now, now) and note is not None and "start time" in note
    assert clamp_times(-1, None, now)[:2] == (now, None)


def test_decode_clamps_and_notes() -> None:
    now = time.time_ns()
    decoded = decode_request(_request(now - 10**9), recv_ns=now)
    child, root = decoded.spans
    assert decoded.clamped == 2 and decoded.clamp_note is not None
    assert (child.start_ns, child.end_ns) == (now, now) and child.notes
    assert root.start_ns == now - 10**9 and root.end_ns == now
    assert root.notes and "out of range" in root.notes[0]
    assert root.events[0].time_ns == now


def test_far_end_time_still_finishes_the_task(
    receiver: RunningReceiver, pipeline: Pipeline, sink: InMemorySink
) -> None:
    start = time.time_ns() - 10**9
    status, _, _ = post(receiver.http_url, _request(start).SerializeToString())
    assert status == 200
    assert pipeline.force_flush(10)
    assert finished(sink) == ["T-far"]
    final = sink.of_type(TaskFinished)[0].task
    assert final.status == "complete"
    assert final.ended_ns is not None and start <= final.ended_ns <= time.time_ns()
    assert all(e.time_ns < 2**63 for e in sink.events)
    assert pipeline.stats.value("span_times_clamped_total") == 2


def test_sdk_span_times_are_clamped() -> None:
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("invoke_agent x", start_time=time.time_ns())
    span.add_event("agent.checkpoint", timestamp=FAR)
    span.end(end_time=FAR)
    data = from_sdk(span)  # type: ignore[arg-type]
    assert data.end_ns is not None and data.end_ns <= time.time_ns()
    assert data.events[0].time_ns <= time.time_ns()
    assert data.notes and "end time" in data.notes[0]


def test_far_end_time_reaches_postgresql(tmp_path: Path, pg_server: Any) -> None:
    """The reproducer: with the PostgreSQL sink the task used to stay `working`."""
    import asyncpg

    from spanvisor_postgres import PostgresSink

    db_url = pg_server.database()
    pipeline = make_pipeline(tmp_path / "data", [PostgresSink()], plugins=True, SPANVISOR_DATABASE_URL=db_url)
    r = RunningReceiver(pipeline, local_settings(tmp_path))
    try:
        assert post(r.http_url, _request(time.time_ns() - 10**9).SerializeToString())[0] == 200
        assert pipeline.force_flush(20)
    finally:
        r.close()

    async def rows() -> tuple[Any, int]:
        conn = await asyncpg.connect(db_url)
        try:
            task = await conn.fetchrow("SELECT status, ended_at FROM agent_tasks WHERE task_id = 'T-far'")
            return task, await conn.fetchval("SELECT count(*) FROM quarantine")
        finally:
            await conn.close()

    task, quarantined = asyncio.run(rows())
    assert task is not None and task["status"] == "complete" and task["ended_at"] is not None
    assert quarantined == 0
