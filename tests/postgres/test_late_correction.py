"""A view corrected after its task finished (a late span on an end-order
path) reaches the task row, whatever order the spans came in, and keeps the
error the TaskFinished recorded (found by review; failed before the fix)."""

from __future__ import annotations

from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from spanvisor.spans.data import SpanData, from_sdk
from spanvisor.tracking.tracker import TaskTracker
from spanvisor_postgres.writer import Writer

from .conftest import run


def _spans(fail: bool) -> list[SpanData]:
    tracer = TracerProvider().get_tracer("t")
    root = tracer.start_span("invoke_agent a", attributes={"agent.name": "a", "gen_ai.operation.name": "invoke_agent"})
    rc = root.get_span_context()
    stamp = {"agent.task.root_span_id": format(rc.span_id, "016x"), "agent.task.id": f"late-{fail}", "agent.id": "a"}
    ctx = trace.set_span_in_context(root)
    calls = []
    for _ in range(2):
        c = tracer.start_span(
            "chat",
            context=ctx,
            attributes={
                **stamp,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
                "gen_ai.usage.cost": 0.5,
            },
        )
        c.end()
        calls.append(c)
    root.set_attributes(stamp)
    if fail:
        root.set_status(Status(StatusCode.ERROR, "budget exceeded"))
    root.end()
    return [from_sdk(s) for s in (*calls, root)]


def _row(url: str, order: list[int], fail: bool) -> dict[str, Any]:
    spans = _spans(fail)
    tracker = TaskTracker()
    events = [e for i in order for e in tracker.span_ended(spans[i])]

    async def go() -> dict[str, Any]:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            writer = Writer(pool)
            for e in events:  # one event per batch, as a slow sink sees them
                await writer.write([e])
            row = await pool.fetchrow(
                "SELECT seq, status, input_tokens, cost_usd, error_message FROM agent_tasks WHERE task_id = $1",
                f"late-{fail}",
            )
            await writer.close()
            return dict(row)
        finally:
            await pool.close()

    return run(go)


def test_a_late_correction_reaches_the_row_and_keeps_the_error(pg_server: Any) -> None:
    for fail in (False, True):
        in_order = _row(pg_server.database(), [0, 1, 2], fail)
        late = _row(pg_server.database(), [0, 2, 1], fail)
        assert late == in_order, fail
        assert (late["input_tokens"], late["cost_usd"]) == (2000, 1.0)
        assert late["error_message"] == ("budget exceeded" if fail else None)
