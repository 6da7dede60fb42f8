"""Every SQL query of the dashboards runs on the real audit schema.

The schema is the PostgreSQL plugin's migrations, applied to a fresh database
on the session's real server (``tests/conftest_pg.py``). Queries are expanded
as Grafana would (template variables, ``$__interval``, the backend macros)
and must run, return rows for a seeded task, and, for annotation queries,
return the columns Grafana reads.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from grafana_dash import Query, dashboards, expand_sql, queries

BOARDS = dashboards()
SQL_QUERIES = [q for name, d in BOARDS.items() for q in queries(name, d) if q.kind == "sql"]
NOW = datetime.now(UTC).replace(microsecond=0)
TASK = "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331"
AGENT = "rivet"
# An agent id a span could carry, quote included: it must not break the SQL.
ODD_AGENT = "o'brien; DROP TABLE agent_tasks; --"


def _seed_sql() -> list[tuple[str, tuple[Any, ...]]]:
    t0 = NOW - timedelta(minutes=30)
    ns = int(t0.timestamp() * 1e9)
    rows: list[tuple[str, tuple[Any, ...]]] = []
    for task_id, agent, status, ended in (
        (TASK, AGENT, "error", t0 + timedelta(minutes=10)),
        ("task-running", AGENT, "working", None),
        ("task-odd", ODD_AGENT, "complete", t0 + timedelta(minutes=1)),
        ("task-old", AGENT, "complete", NOW - timedelta(days=3)),
    ):
        start = NOW - timedelta(days=3, minutes=5) if task_id == "task-old" else t0
        rows.append(
            (
                """INSERT INTO agent_tasks (task_id, trace_id, root_span_id, agent_id, agent_name,
                 task_name, repo, status, progress, started_at, updated_at, updated_ns, ended_at,
                 duration_s, input_tokens, output_tokens, context_tokens, context_limit,
                 error_type, error_message, last_checkpoint_at, last_event_id)
               VALUES ($1, $2, $3, $4, $5, $6, 'acme/plant', $7, 40, $8, $8, $9, $10, $11,
                 12000, 3400, 150000, 200000, $12, $13, $8, 'ev-last')""",
                (
                    task_id,
                    "0af7651916cd43dd8448eb211c80319c",
                    "b7ad6b7169203331",
                    agent,
                    agent.title(),
                    f"Diagnose {task_id}",
                    status,
                    start,
                    ns,
                    ended,
                    (ended - start).total_seconds() if ended else None,
                    "ValueError" if status == "error" else None,
                    "bad flange" if status == "error" else None,
                ),
            )
        )
    for i in range(5):
        at = t0 + timedelta(minutes=i + 1)
        warning = i == 3
        rows.append(
            (
                """INSERT INTO agent_checkpoints (event_id, task_id, agent_id, kind, at, time_ns,
                 status, progress, step, message, source, context_tokens, context_limit,
                 input_tokens, output_tokens, level, threshold, ratio)
               VALUES ($1, $2, $3, $4, $5, $6, 'working', $7, 'Route', 'Routed to SME',
                 'event', $8, 200000, $9, $10, $11, $12, $13)""",
                (
                    f"cp-{i}",
                    TASK,
                    AGENT,
                    "context_warning" if warning else "checkpoint",
                    at,
                    ns + i,
                    20.0 * i,
                    40000 * i,
                    1000 * i,
                    300 * i,
                    "warning" if warning else None,
                    0.7 if warning else None,
                    0.72 if warning else None,
                ),
            )
        )
    rows.append(
        (
            """INSERT INTO task_artifacts (event_id, task_id, agent_id, at, time_ns, name, uri, kind)
           VALUES ('art-1', $1, $2, $3, $4, 'report.md', 's3://b/report.md', 'file')""",
            (TASK, AGENT, t0 + timedelta(minutes=6), ns + 10),
        )
    )
    rows.append(
        (
            """INSERT INTO human_interventions (intervention_id, task_id, at, actor, action, comment)
           VALUES ('hi-1', $1, $2, 'U123', 'approve', 'looks fine')""",
            (TASK, t0 + timedelta(minutes=7)),
        )
    )
    return rows


@pytest.fixture(scope="module")
def audit_db(pg_server: Any) -> str:
    url: str = pg_server.database()

    async def seed() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            for sql, args in _seed_sql():
                await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(seed())
    return url


def _run(url: str, sql: str) -> list[Any]:
    async def go() -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            # Grafana's reader should not write: run each query read-only.
            async with conn.transaction(readonly=True):
                return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def _variables(q: Query, agent: str) -> dict[str, Any]:
    multi = q.dashboard == "agents-overview.json"
    return {"agent": [agent, "bolt"] if multi else agent, "task": TASK}


def test_there_are_sql_queries_everywhere() -> None:
    where = {q.where.split()[0] for q in SQL_QUERIES}
    assert where == {"panel", "variable", "annotation"}
    assert {q.dashboard for q in SQL_QUERIES} == set(BOARDS)


@pytest.mark.parametrize("query", SQL_QUERIES, ids=str)
def test_sql_runs_on_the_audit_schema_and_returns_rows(audit_db: str, query: Query) -> None:
    sql = expand_sql(query.text, _variables(query, AGENT), NOW - timedelta(hours=6), NOW)
    rows = _run(audit_db, sql)
    assert rows, f"{query}: no rows for the seeded task\n{sql}"
    if query.where.startswith("annotation"):
        cols = set(rows[0].keys())
        assert {"time", "timeend", "text", "tags"} <= cols
        texts = [r["text"] for r in rows]
        assert any("Diagnose" in t for t in texts)
        assert all(r["timeend"] >= r["time"] for r in rows)
        # The task that started days ago is outside the range.
        assert not any("task-old" in t for t in texts)
    if query.where == "variable task":
        assert {"__value", "__text"} <= set(rows[0].keys())
        assert TASK in {r["__value"] for r in rows}


@pytest.mark.parametrize("query", SQL_QUERIES, ids=str)
def test_sql_survives_a_hostile_agent_id(audit_db: str, query: Query) -> None:
    sql = expand_sql(query.text, _variables(query, ODD_AGENT), NOW - timedelta(hours=6), NOW)
    _run(audit_db, sql)
    assert _run(audit_db, "SELECT count(*) AS n FROM agent_tasks")[0]["n"] == 4


def test_timeline_holds_every_kind(audit_db: str) -> None:
    (timeline,) = [q for q in SQL_QUERIES if "Timeline" in q.where]
    rows = _run(audit_db, expand_sql(timeline.text, {"agent": AGENT, "task": TASK}, NOW - timedelta(hours=6), NOW))
    kinds = [r["kind"] for r in rows]
    assert set(kinds) == {"started", "checkpoint", "context_warning", "artifact", "intervention", "finished"}
    assert kinds[0] == "started" and kinds[-1] == "finished"
    times = [r["time"] for r in rows]
    assert times == sorted(times)
