"""Every SQL query of the dashboards runs on the real audit schema.

The schema is the PostgreSQL plugin's migrations, applied to a fresh database
on the session's real server (``tests/conftest_pg.py``). Queries are expanded
as Grafana would (template variables, ``$__interval``, the backend macros)
and must run, return rows for a seeded task, and, for annotation queries,
return the columns Grafana reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from grafana_dash import Query, dashboards, expand_sql, queries
from grafana_helpers import read_only, seeded_database

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
    for task_id, agent, status, ended, cost in (
        (TASK, AGENT, "error", t0 + timedelta(minutes=10), 1.5),
        ("task-running", AGENT, "working", None, 0.2),
        ("task-odd", ODD_AGENT, "complete", t0 + timedelta(minutes=1), 0.05),
        ("task-old", AGENT, "complete", NOW - timedelta(days=3), 9.0),
    ):
        start = NOW - timedelta(days=3, minutes=5) if task_id == "task-old" else t0
        rows.append(
            (
                """INSERT INTO agent_tasks (task_id, trace_id, root_span_id, agent_id, agent_name,
                 task_name, repo, status, progress, started_at, updated_at, updated_ns, ended_at,
                 duration_s, input_tokens, output_tokens, context_tokens, context_limit,
                 error_type, error_message, last_checkpoint_at, last_event_id, cost_usd, unpriced_calls,
                 budget_usd)
               VALUES ($1, $2, $3, $4, $5, $6, 'acme/plant', $7, 40, $8, $8, $9, $10, $11,
                 12000, 3400, 150000, 200000, $12, $13, $8, 'ev-last', $14, 1, $15)""",
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
                    cost,
                    2.0 if task_id == TASK else None,
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
    # Cost: a priced model call, a context forecast and a budget warning.
    for i, (kind, source, level, threshold, ratio, attributes, cost) in enumerate(
        (
            (
                "checkpoint",
                "model_call",
                None,
                None,
                None,
                '{"model": "claude-sonnet-4-5", "input_tokens": 1000, '
                '"output_tokens": 10, "cost_usd": 0.75, "cost_source": "genai-prices"}',
                0.75,
            ),
            ("context_forecast", None, "forecast", 0.7, 0.6, '{"calls": 2, "eta_s": 40}', None),
            (
                "budget_warning",
                None,
                "warning",
                0.8,
                0.8,
                '{"scope": "task", "unit": "usd", "used": 1.6, "budget": 2.0}',
                None,
            ),
        )
    ):
        rows.append(
            (
                """INSERT INTO agent_checkpoints (event_id, task_id, agent_id, kind, at, time_ns,
                 status, source, context_tokens, context_limit, input_tokens, output_tokens, level,
                 threshold, ratio, attributes, cost_usd)
               VALUES ($1, $2, $3, $4, $5, $6, 'working', $7, 120000, 200000, 1000, 10, $8, $9, $10,
                 $11::jsonb, $12)""",
                (
                    f"cost-{i}",
                    TASK,
                    AGENT,
                    kind,
                    t0 + timedelta(minutes=8),
                    ns + 20 + i,
                    source,
                    level,
                    threshold,
                    ratio,
                    attributes,
                    cost,
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
    rows.append(
        (
            """INSERT INTO human_interventions (intervention_id, task_id, at, actor, action, outcome, reason,
                 source, actor_name, known)
           VALUES ('hi-2', $1, $2, 'U9', 'cancel', 'denied', 'not allowed', 'slack', 'mallory', false)""",
            (TASK, t0 + timedelta(minutes=7, seconds=30)),
        )
    )
    return rows


@pytest.fixture(scope="module")
def audit_db(pg_server: Any) -> str:
    return seeded_database(pg_server, _seed_sql())


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
    rows = read_only(audit_db, sql)
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
    read_only(audit_db, sql)
    assert read_only(audit_db, "SELECT count(*) AS n FROM agent_tasks")[0]["n"] == 4


def test_timeline_holds_every_kind(audit_db: str) -> None:
    (timeline,) = [q for q in SQL_QUERIES if "Timeline" in q.where]
    rows = read_only(audit_db, expand_sql(timeline.text, {"agent": AGENT, "task": TASK}, NOW - timedelta(hours=6), NOW))
    kinds = [r["kind"] for r in rows]
    assert set(kinds) == {
        "started",
        "checkpoint",
        "model_call",
        "context_warning",
        "context_forecast",
        "budget_warning",
        "artifact",
        "intervention",
        "finished",
    }
    assert kinds[0] == "started" and kinds[-1] == "finished"
    times = [r["time"] for r in rows]
    assert times == sorted(times)


def test_timeline_reads_cost_forecast_and_budget_rows(audit_db: str) -> None:
    (timeline,) = [q for q in SQL_QUERIES if "Timeline" in q.where]
    rows = read_only(audit_db, expand_sql(timeline.text, {"agent": AGENT, "task": TASK}, NOW - timedelta(hours=6), NOW))
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["model_call"]["cost_usd"] == 0.75
    assert by_kind["model_call"]["detail"].startswith("claude-sonnet-4-5 · 1000 in / 10 out")
    assert by_kind["context_forecast"]["detail"] == "context at 60%: at this rate 70% in about 2 calls"
    assert by_kind["budget_warning"]["detail"] == "80% of the task budget used: 1.6 of 2.0 USD"


def test_timeline_and_recent_interventions_read_decisions(audit_db: str) -> None:
    (timeline,) = [q for q in SQL_QUERIES if "Timeline" in q.where]
    rows = read_only(audit_db, expand_sql(timeline.text, {"agent": AGENT, "task": TASK}, NOW - timedelta(hours=6), NOW))
    details = [r["detail"] for r in rows if r["kind"] == "intervention"]
    assert details == ["approve by U123: looks fine", "mallory tried to cancel via slack: denied (not allowed)"]
    recent = _panel("Recent interventions")
    rows = read_only(audit_db, expand_sql(recent.text, _variables(recent, AGENT), NOW - timedelta(hours=6), NOW))
    assert [(r["action"], r["outcome"], r["who"], r["agent_id"]) for r in rows] == [
        ("cancel", "denied", "mallory (U9)", AGENT),
        ("approve", "applied", "U123", AGENT),
    ]


def _panel(title: str) -> Query:
    (found,) = [q for q in SQL_QUERIES if f"{title!r}" in q.where]
    return found


def test_cost_panels_sum_per_agent_and_day_and_rank_tasks(audit_db: str) -> None:
    variables = {"agent": [AGENT, "bolt"], "task": TASK}
    per_day = read_only(
        audit_db, expand_sql(_panel("Cost per agent per day").text, variables, NOW - timedelta(hours=6), NOW)
    )
    # One row per UTC day (two when the seeded half hour spans midnight).
    assert {r["metric"] for r in per_day} == {AGENT}
    assert sum(r["cost_usd"] for r in per_day) == 0.75
    ranked = read_only(
        audit_db, expand_sql(_panel("Most expensive tasks").text, variables, NOW - timedelta(hours=6), NOW)
    )
    # task-old cost most, but started outside the range.
    assert [r["task_id"] for r in ranked] == [TASK, "task-running"]
    assert ranked[0]["budget_used"] == 0.75 and ranked[1]["budget_used"] is None
