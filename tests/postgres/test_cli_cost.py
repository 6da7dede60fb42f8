"""`spanvisor tasks` / `task` / `stats` show what tasks cost.

A real agent (the OTel SDK and the in-process processor) writes through the
real PostgreSQL sink: priced calls, one call of a model no price is known
for, a task budget it crosses and a steady context rise that is forecast.
The day's budget warning (the tracker's ledger, not yet fed from config by
the pipeline) is written as the tracker builds it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from spanvisor.display.readable import usd
from spanvisor.events import BudgetWarning, stable_id
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor_postgres import PostgresSink

from .conftest import make_config, make_ctx, run

SONNET = "claude-sonnet-4-5"
UNKNOWN = "acme-private-llm-7"


def _chat(tracer: Any, model: str, tokens_in: int, provider: str = "anthropic") -> None:
    attrs = {cv.GEN_AI_OPERATION: "chat", "gen_ai.provider.name": provider, cv.GEN_AI_REQUEST_MODEL: model}
    with tracer.start_as_current_span(f"chat {model}", attributes=attrs) as span:
        span.set_attributes({cv.GEN_AI_INPUT: tokens_in, cv.GEN_AI_OUTPUT: 100})


@pytest.fixture(scope="module")
def agent(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, InMemorySink]:
    from opentelemetry.sdk.trace import TracerProvider

    from spanvisor.otel.processor import SpanvisorSpanProcessor

    url: str = pg_server.database()
    config = make_config(tmp_path_factory.mktemp("agent"), url).with_values(shutdown_timeout_s=5.0)
    memory = InMemorySink()
    processor = SpanvisorSpanProcessor(sinks=[PostgresSink(), memory], config=config)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    try:
        attrs = {cv.TASK_ID: "audit-1", cv.TASK_NAME: "Audit the gateway", cv.AGENT_ID: "rivet", cv.BUDGET_USD: 1.0}
        with tracer.start_as_current_span("audit", attributes=attrs):
            # 100k, 110k, 120k of Sonnet's 200k window: 70 % is forecast; about
            # $0.33 a call: 80 % of the $1 budget on the third, 100 % on the fourth.
            for tokens in (100_000, 110_000, 120_000, 125_000):
                _chat(tracer, SONNET, tokens)
            _chat(tracer, UNKNOWN, 5_000, provider="acme")
        with tracer.start_as_current_span("free", attributes={cv.TASK_ID: "free-1", cv.AGENT_ID: "vera"}):
            _chat(tracer, UNKNOWN, 1_000, provider="acme")
        assert processor.force_flush(20_000)
    finally:
        processor.pipeline.shutdown(5.0)
    return url, memory


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))

    def call(url: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("SPANVISOR_DATABASE_URL", url)
        code = main(list(argv))
        return code, capsys.readouterr().out

    return call


def _final_cost(memory: InMemorySink, task_id: str) -> float:
    return memory.for_task(task_id)[-1].task.cost_usd


def _table(out: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of a table, cut where the rule under the header has its columns."""
    lines = out.strip().splitlines()
    spans = [m.span() for m in re.finditer("─+", lines[1])]

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans]

    return cells(lines[0]), [cells(line) for line in lines[2:]]


def test_tasks_show_the_estimated_cost_and_unpriced_calls(agent: tuple[str, InMemorySink], cli: Any) -> None:
    url, memory = agent
    code, out = cli(url, "tasks")
    assert code == 0
    header, rows = _table(out)
    assert "COST" in header
    by_task = {r[0]: r[header.index("COST")] for r in rows}
    cost = _final_cost(memory, "audit-1")
    assert cost > 1.0
    assert by_task["audit-1"] == f"~{usd(cost)} + 1 unpriced"
    assert by_task["free-1"] == "unknown (1 unpriced)"

    code, out = cli(url, "tasks", "--json")
    rows_json = {r["task_id"]: r for r in map(json.loads, out.splitlines())}
    audit = rows_json["audit-1"]
    assert math.isclose(audit["cost_usd"], cost, rel_tol=1e-9)
    assert audit["unpriced_calls"] == 1 and audit["budget_usd"] == 1.0 and audit["budget_tokens"] is None
    assert rows_json["free-1"]["cost_usd"] == 0 and rows_json["free-1"]["unpriced_calls"] == 1


def test_task_shows_cost_budget_and_readable_warning_rows(agent: tuple[str, InMemorySink], cli: Any) -> None:
    url, memory = agent
    code, out = cli(url, "task", "audit-1")
    assert code == 0
    head, table = out.split("\n\n", 1)
    cost = _final_cost(memory, "audit-1")
    assert f"cost  ~{usd(cost)} + 1 unpriced (estimate)" in head
    assert f"budget  $1.00 ({cost:.0%} used)" in head
    details = {}
    for line in table.splitlines()[2:]:
        kind = line.split()[3]
        details.setdefault(kind, []).append(line.split(kind, 1)[1].strip())
    calls = details["model_call"]
    assert len(calls) == 5
    assert calls[0].startswith(f"{SONNET} · 100,000 in / 100 out tokens · ~$0.30")
    assert calls[4].startswith(f"{UNKNOWN} · 5,000 in / 100 out tokens · cost unknown")
    (forecast,) = details["context_forecast"]
    assert forecast.startswith("context at 60% (120,100 / 200,000): at this rate 70% in about 2 calls")
    budgets = details["budget_warning"]
    assert budgets[0] == f"80% of this task's budget used: {_usd_at(memory, 0.8)} of $1.00"
    assert budgets[1].startswith("100% of this task's budget used: ")

    code, out = cli(url, "task", "audit-1", "--json")
    doc = json.loads(out)
    assert math.isclose(doc["task"]["cost_usd"], cost, rel_tol=1e-9)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in doc["timeline"]:
        by_kind.setdefault(entry["kind"], []).append(entry)
    priced = [c for c in by_kind["model_call"] if c["cost_usd"] is not None]
    assert len(priced) == 4 and all(c["cost_source"] == "genai-prices" for c in priced)
    assert math.isclose(sum(c["cost_usd"] for c in priced), cost, rel_tol=1e-9)
    assert by_kind["model_call"][4]["cost_source"] == "unpriced"
    fc = by_kind["context_forecast"][0]
    assert fc["threshold"] == 0.7 and fc["calls"] == 2 and fc["context_limit"] == 200_000
    warn = by_kind["budget_warning"][0]
    assert (warn["scope"], warn["unit"], warn["level"], warn["threshold"], warn["budget"]) == (
        "task",
        "usd",
        "warning",
        0.8,
        1.0,
    )
    assert by_kind["budget_warning"][1]["level"] == "critical"


def _usd_at(memory: InMemorySink, level: float) -> str:
    (warning,) = [e for e in memory.of_type(BudgetWarning) if e.level == level]
    return usd(warning.used)


def test_a_ledger_warning_names_its_agent_and_day(
    agent: tuple[str, InMemorySink], cli: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url, memory = agent
    last = memory.for_task("free-1")[-1]
    warning = BudgetWarning(
        event_id=stable_id(last.task_id, "budget", "agent_day", "vera:2026-11-22", 0.8),
        time_ns=last.time_ns + 1,
        task=dataclasses.replace(last.task, seq=last.task.seq + 1),
        scope="agent_day",
        unit="usd",
        level=0.8,
        used=41.5,
        budget=50.0,
        subject="vera:2026-11-22",
    )

    async def load() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path_factory.mktemp("ledger"), url)))
        await sink.export([warning])
        await sink.shutdown(5)

    run(load)
    code, out = cli(url, "task", "free-1")
    assert code == 0
    assert "80% of vera's budget for 2026-11-22 used: $41.50 of $50.00" in out


def test_stats_sum_cost_per_agent(agent: tuple[str, InMemorySink], cli: Any) -> None:
    url, memory = agent
    code, out = cli(url, "stats", "--since", "1d")
    assert code == 0
    header, rows = _table(out)
    by_agent = {r[0]: r[header.index("COST")] for r in rows}
    cost = _final_cost(memory, "audit-1")
    assert by_agent == {"rivet": f"~{usd(cost)} + 1 unpriced", "vera": "unknown (1 unpriced)"}
    code, out = cli(url, "stats", "--since", "1d", "--json")
    stats = {r["agent_id"]: r for r in map(json.loads, out.splitlines())}
    assert math.isclose(stats["rivet"]["cost_usd"], cost, rel_tol=1e-9)
    assert stats["rivet"]["unpriced_calls"] == 1 and stats["vera"]["unpriced_calls"] == 1
