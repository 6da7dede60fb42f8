"""Two processes share a state store: a click received by one reaches the other.

Replica A takes the click for a task that B holds (the usual case behind a
load balancer): A records it once and announces it without touching the
task's state (``known=False``); B's view of the task catches up (the request
closes, the decision is listed) without a second intervention; the same
click delivered to both records one decision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from opentelemetry.sdk.trace import TracerProvider

from spanvisor.config import Config
from spanvisor.events import Checkpoint, Decision, HumanIntervention
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.testing import InMemorySink

from ._invariants import check_stream


def _until(cond: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_click_on_one_replica_reaches_the_task_on_the_other() -> None:
    store = InMemoryStateStore()
    config = Config.load(env={}, extra=()).with_values(shutdown_timeout_s=2.0)
    a_sink, b_sink = InMemorySink(), InMemorySink()
    a = Pipeline(config, sinks=[a_sink], state_store=store).start()
    b = Pipeline(config, sinks=[b_sink], state_store=store).start()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SpanvisorSpanProcessor(pipeline=b))
    tracer = provider.get_tracer("agent")
    try:
        assert a.wait_ready(10)
        with tracer.start_as_current_span("deploy", attributes={cv.TASK_NAME: "deploy", cv.TASK_ID: "T9"}) as root:
            root.add_event("agent.approval.request", {cv.APPROVAL_ID: "go", cv.APPROVAL_QUESTION: "Ship it?"})
            assert _until(lambda: any(e.task.approvals for e in b_sink.events)), "B never saw the request"
            click = Decision("click-1", "T9", "approve", "U1", time.time_ns(), approval_id="go", source="slack")
            first = asyncio.run(a.control.decide(click))
            again = asyncio.run(b.control.decide(click))  # the same click, delivered to B too
            assert first.outcome == "applied", first
            assert again.outcome == "duplicate", again
            assert _until(lambda: any(isinstance(e, Checkpoint) and "decisions" in e.changed for e in b_sink.events)), (
                "B's view never caught up"
            )
        b.force_flush(5)
        a.force_flush(5)
        on_a = [e for e in a_sink.events if isinstance(e, HumanIntervention)]
        assert [(e.event_id, e.known, e.outcome) for e in on_a] == [("click-1", False, "applied")]
        assert not [e for e in b_sink.events if isinstance(e, HumanIntervention)], "B announced it a second time"
        last = b_sink.events[-1]
        assert last.task.approvals == () and [d.intervention_id for d in last.task.decisions] == ["click-1"]
        check_stream(b_sink.events, all_finished=True)
        # Recorded on the run the click named (none: the task id's latest run).
        assert asyncio.run(b.control.decisions("T9")) == [dataclasses.replace(click, run_id=last.task.run_id)]
    finally:
        b.shutdown(2)
        a.shutdown(2)
