"""The issue's run, end to end: plain-OTel agents behind ``spanvisor serve``
with the PostgreSQL sink, each task's root naming its ``agent.task.id`` and
leaving in a later request than its children (as every SDK exports a parent
after its children). Every task is shown from its first calls, then known by
its own id: its row and every checkpoint row under that id, none under the
derived one, the derived id still finding it (issue 66)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
from agent_traces import make_provider, request_for
from test_http import post
from tests.waiting import wait_until

from conftest import RunningReceiver, local_settings
from spanvisor.config import Config
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.serve import serve_config, serve_sinks

TASKS = 6


def _spans() -> tuple[list[Any], list[Any]]:
    """Each task's children, then the roots (naming the ids) on their own."""
    tp, cap = make_provider("plain-agent")
    tracer = tp.get_tracer("agent")
    for i in range(TASKS):
        with tracer.start_as_current_span("invoke_agent fixer") as root:
            for step in range(3):
                with tracer.start_as_current_span("chat gpt-4o") as m:
                    m.set_attributes(
                        {
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "gpt-4o",
                            "gen_ai.usage.input_tokens": 100 * (step + 1),
                            "gen_ai.usage.output_tokens": 10,
                        }
                    )
                with tracer.start_as_current_span("execute_tool run") as t:
                    t.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "run"})
            root.set_attributes({"agent.task.id": f"fix-{i}", "agent.task.name": f"Fix {i}", "agent.progress": 100})
    tp.shutdown()
    roots = [s for s in cap.spans if s.parent is None]
    return [s for s in cap.spans if s.parent is not None], roots


def test_tasks_shown_before_their_roots_are_recorded_under_their_own_ids(tmp_path: Path, pg_server: Any) -> None:
    db_url = pg_server.database()
    env = {"SPANVISOR_DATA_DIR": str(tmp_path / "data"), "SPANVISOR_SINKS": "postgres"}
    env |= {"SPANVISOR_DATABASE_URL": db_url, "SPANVISOR_EMBEDDED_DB": "false"}
    config = serve_config(Config.load(env=env))
    pipeline = Pipeline(config=config, sinks=serve_sinks(config), path="receiver").start()
    assert pipeline.wait_ready(60), pipeline.ready()
    r = RunningReceiver(pipeline, local_settings(tmp_path))
    children, roots = _spans()
    derived = {f"{s.context.trace_id:032x}-{s.context.span_id:016x}": f"fix-{i}" for i, s in enumerate(roots)}
    try:
        assert post(r.http_url, request_for(children).SerializeToString())[0] == 200
        wait_until(
            lambda: pipeline.stats.value("provisional_tasks_total", outcome="shown") == TASKS,
            what="every task shown from its calls",
        )
        assert post(r.http_url, request_for(roots).SerializeToString())[0] == 200
        wait_until(
            lambda: pipeline.stats.value("provisional_tasks_total", outcome="renamed") == TASKS,
            what="every task renamed",
        )
        assert pipeline.force_flush(30)
    finally:
        r.close()

    async def rows() -> tuple[list[Any], list[Any], list[Any]]:
        conn = await asyncpg.connect(db_url)
        try:
            tasks = await conn.fetch("SELECT task_id, status, progress, task_name FROM agent_tasks ORDER BY task_id")
            points = await conn.fetch("SELECT task_id, count(*) AS n FROM agent_checkpoints GROUP BY task_id")
            aliases = await conn.fetch("SELECT former_id, task_id FROM task_aliases")
            return tasks, points, aliases
        finally:
            await conn.close()

    tasks, points, aliases = asyncio.run(rows())
    assert [(t["task_id"], t["status"], t["progress"]) for t in tasks] == [
        (f"fix-{i}", "complete", 100) for i in range(TASKS)
    ]
    assert {p["task_id"] for p in points} == set(derived.values())  # nothing left under a derived id
    assert all(p["n"] >= 7 for p in points)  # 3 model calls, 3 tool calls, the root's own state row
    assert {a["former_id"]: a["task_id"] for a in aliases} == derived
