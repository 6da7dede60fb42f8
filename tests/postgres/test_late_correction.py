"""A view corrected after its task finished (a late span on an end-order
path) reaches the task row, whatever order the spans came in, and keeps the
error the TaskFinished recorded (found by review; failed before the fix)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from spanvisor.events import TaskCorrected
from spanvisor.spans.data import SpanData, from_sdk
from spanvisor.tracking.tracker import TaskTracker
from spanvisor_postgres.writer import Writer
from tests.core._late import late_call_events

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


def test_a_task_corrected_event_updates_the_row_and_adds_a_timeline_row(pg_server: Any) -> None:
    """TaskCorrected (the late-span rule): the task row takes the corrected
    totals and stays finished; the timeline gets one row of kind corrected
    saying what was added, the artifact table the late artifact; a replay
    writes nothing twice."""
    events = late_call_events("T-corrected", artifact=True)
    corrected = events[-1]
    assert isinstance(corrected, TaskCorrected)
    url = pg_server.database()

    async def go() -> tuple[Any, ...]:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            writer = Writer(pool)
            for _ in range(2):  # the second time: a replay
                for e in events:
                    await writer.write([e])
            task = await pool.fetchrow(
                "SELECT seq, status, input_tokens, output_tokens, cost_usd, ended_at IS NOT NULL AS ended"
                " FROM agent_tasks WHERE task_id = $1",
                "T-corrected",
            )
            rows = await pool.fetch(
                "SELECT kind, input_tokens, attributes, seq FROM agent_checkpoints WHERE task_id = $1 ORDER BY seq",
                "T-corrected",
            )
            arts = await pool.fetch("SELECT name FROM task_artifacts WHERE task_id = $1", "T-corrected")
            await writer.close()
            return dict(task), [dict(r) for r in rows], [r["name"] for r in arts]
        finally:
            await pool.close()

    task, rows, arts = run(go)
    assert task["seq"] == corrected.task.seq and task["status"] == "complete" and task["ended"]
    assert (task["input_tokens"], task["output_tokens"]) == (6_000, 110)
    assert float(task["cost_usd"]) == pytest.approx(corrected.task.cost_usd)
    assert [r["kind"] for r in rows] == ["checkpoint", "corrected"]
    added = json.loads(rows[-1]["attributes"])
    assert (added["input_tokens"], added["output_tokens"], added["artifacts"]) == (5_000, 10, ["report.pdf"])
    assert rows[-1]["input_tokens"] == 6_000
    assert arts == ["report.pdf"]
