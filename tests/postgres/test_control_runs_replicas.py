"""Two replicas on one PostgreSQL state store judge a decision by the same
facts: the shared record of the run, not what each process happens to track.

Replica A tracks the task (the agent's spans go to it); replica B tracks
nothing. A retry, a cancel or an acknowledgement of a *finished* task sent
to B is refused as A refuses it, an approval of an id nobody asked is
refused on both, and a retry of the failed task applies once whichever
replica gets it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from spanvisor.config import Config
from spanvisor.events import Decision, HumanIntervention, TaskFinished
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink


def _pipeline(tmp: Path, db_url: str, sink: InMemorySink, name: str) -> Pipeline:
    config = Config.load(
        env={
            "SPANVISOR_DATA_DIR": str(tmp / name),
            "SPANVISOR_DATABASE_URL": db_url,
            "SPANVISOR_STATE_STORE": "postgres",
            "SPANVISOR_REPLICA_ID": name,
        }
    ).with_values(shutdown_timeout_s=5.0)
    p = Pipeline(config, sinks=[sink]).start()
    assert p.wait_ready(30)
    return p


def _until(cond: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.05)


def test_every_replica_refuses_and_applies_the_same_decisions(pg_server: Any, tmp_path: Path) -> None:
    db_url = pg_server.database()
    a_sink, b_sink = InMemorySink(), InMemorySink()
    a = _pipeline(tmp_path, db_url, a_sink, "a")
    b = _pipeline(tmp_path, db_url, b_sink, "b")
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SpanvisorSpanProcessor(pipeline=a))
    tracer = provider.get_tracer("agent")
    tid = f"job-{uuid.uuid4().hex[:6]}"

    def decide(p: Pipeline, action: str, approval: str | None = None) -> Any:
        d = Decision(uuid.uuid4().hex, tid, action, "alice", time.time_ns(), approval_id=approval)  # type: ignore[arg-type]
        return asyncio.run(p.control.decide(d))

    try:
        with tracer.start_as_current_span("job", attributes={cv.TASK_ID: tid, cv.TASK_NAME: "job"}) as root:
            root.add_event(cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Ship?"})
            _until(lambda: asyncio.run(b.control.run(tid)) is not None)
            # While it runs: no retry or acknowledgement, and no answer to a question never asked.
            for p in (a, b):
                assert (decide(p, "retry").code, decide(p, "acknowledge").code) == ("still_running", "still_running")
                assert decide(p, "approve", "zz").code == "unknown_request"
            root.set_attribute(cv.STATUS, "complete")
        _until(lambda: a_sink.of_type(TaskFinished))
        _until(lambda: (asyncio.run(b.control.run(tid)) or {}).get("state") == "finished")
        # Finished (complete): B, which never tracked it, refuses like A.
        for p in (b, a):
            assert decide(p, "retry").code == "not_failed"
            assert decide(p, "acknowledge").code == "not_failed"
            assert decide(p, "cancel").code == "finished"
            assert decide(p, "approve", "a1").code == "expired"
        assert a.force_flush(10) and b.force_flush(10)
        refused = [e for e in (*a_sink.events, *b_sink.events) if isinstance(e, HumanIntervention)]
        assert refused and all(e.outcome == "denied" and e.code and e.reason for e in refused)
        assert not [e for e in refused if e.outcome == "applied"]
    finally:
        provider.shutdown()
        b.shutdown(5)
        a.shutdown(5)


def test_a_failed_run_is_retried_once_whichever_replica_gets_it(pg_server: Any, tmp_path: Path) -> None:
    db_url = pg_server.database()
    a_sink, b_sink = InMemorySink(), InMemorySink()
    a = _pipeline(tmp_path, db_url, a_sink, "a")
    b = _pipeline(tmp_path, db_url, b_sink, "b")
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SpanvisorSpanProcessor(pipeline=a))
    tid = f"job-{uuid.uuid4().hex[:6]}"
    try:
        try:
            with provider.get_tracer("agent").start_as_current_span("job", attributes={cv.TASK_ID: tid}):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        _until(lambda: (asyncio.run(b.control.run(tid)) or {}).get("state") == "failed")
        d = Decision("retry-1", tid, "retry", "alice", time.time_ns())
        first, again = asyncio.run(b.control.decide(d)), asyncio.run(a.control.decide(d))
        assert (first.outcome, again.outcome) == ("applied", "duplicate")
        other = asyncio.run(a.control.decide(Decision("retry-2", tid, "retry", "bob", time.time_ns())))
        assert other.outcome == "already_decided" and "alice" in (other.reason or "")
    finally:
        provider.shutdown()
        b.shutdown(5)
        a.shutdown(5)
