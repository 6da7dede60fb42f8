"""Cost, budget and forecast metrics: a real agent through the real
tracker, and hand-built ledger warnings for the day and month scopes (the
pipeline does not hand budgets from config to the tracker yet)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from datetime import UTC, datetime

import pytest
from prom_streams import S, feed, started_sink, val, view
from prom_tools import require
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spanvisor.config import Config
from spanvisor.events import BudgetWarning, Checkpoint, ContextForecast, Event, TaskView, stable_id
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor_prometheus import PrometheusSink
from spanvisor_prometheus.collectors import TaskCollector
from spanvisor_prometheus.settings import SETTINGS
from spanvisor_prometheus.state import TaskMetrics

SONNET = "claude-sonnet-4-5"
UNKNOWN = "acme-private-llm-7"
# 2026-11-22 12:00 UTC, and the next day.
NOON = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp()) * S
NEXT_DAY = NOON + 86_400 * S


def _chat(tracer: object, model: str, tokens_in: int, tokens_out: int, provider: str = "anthropic") -> None:
    with tracer.start_as_current_span(  # type: ignore[attr-defined]
        f"chat {model}",
        attributes={cv.GEN_AI_OPERATION: "chat", "gen_ai.provider.name": provider, cv.GEN_AI_REQUEST_MODEL: model},
    ) as span:
        span.set_attributes({cv.GEN_AI_INPUT: tokens_in, cv.GEN_AI_OUTPUT: tokens_out})


def test_a_real_agent_gives_cost_unpriced_calls_budget_warnings_and_a_forecast() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    registry = CollectorRegistry()
    memory = InMemorySink()
    config = Config.load(env={}, extra=SETTINGS).with_values(shutdown_timeout_s=2.0)
    processor = SpanvisorSpanProcessor(sinks=[PrometheusSink(registry=registry), memory], config=config)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    try:
        attrs = {cv.TASK_NAME: "report", cv.AGENT_ID: "rivet", cv.BUDGET_USD: 1.0}
        with tracer.start_as_current_span("report", attributes=attrs):
            # A steady rise (100k, 110k, 120k of a 200k window): the third call
            # forecasts 70 % about two calls ahead. $0.30+ a call at $3/M input.
            for tokens in (100_000, 110_000, 120_000):
                _chat(tracer, SONNET, tokens, 100)
            _chat(tracer, UNKNOWN, 5_000, 100, provider="acme")
            assert processor.force_flush(10_000)
            # The task is open and past 80 % of its $1 budget.
            ratio = val(registry, "spanvisor_budget_used_ratio", scope="task")
            assert ratio is not None and 0.8 <= ratio < 1.0
            _chat(tracer, SONNET, 125_000, 100)
        assert processor.force_flush(10_000)

        final = memory.events[-1].task
        assert final.unpriced_calls == 1 and final.cost_usd > 1.0
        cost = val(registry, "spanvisor_cost_usd_total", agent="rivet", model=SONNET)
        assert cost is not None and math.isclose(cost, final.cost_usd, rel_tol=1e-9)
        # The unknown model has calls but no cost series: never a guessed 0.
        assert val(registry, "spanvisor_model_calls_total", agent="rivet", model=UNKNOWN) == 1
        assert val(registry, "spanvisor_cost_usd_total", agent="rivet", model=UNKNOWN) is None
        assert val(registry, "spanvisor_unpriced_model_calls_total", agent="rivet") == 1
        assert val(registry, "spanvisor_context_forecasts_total", agent="rivet") == len(memory.of_type(ContextForecast))
        assert memory.of_type(ContextForecast), "the steady rise forecasts"
        assert val(registry, "spanvisor_budget_warnings_total", scope="task", level="warning") == 1
        assert val(registry, "spanvisor_budget_warnings_total", scope="task", level="critical") == 1
        # Finished: no open task with a budget, so the task scope is absent.
        assert val(registry, "spanvisor_budget_used_ratio", scope="task") is None
        sink = processor.pipeline.sinks[0]
        assert isinstance(sink, PrometheusSink) and sink.debug_state()["rejected_values"] == 0
    finally:
        processor.pipeline.shutdown(2.0)


def _model_call(v: TaskView, n: int, t_ns: int, cost: float | None, model: str = SONNET) -> Checkpoint:
    attrs: dict[str, object] = {"model": model, "operation": "chat", "input_tokens": 1000, "output_tokens": 10}
    if cost is None:
        attrs["cost_source"] = "unpriced"
    else:
        attrs |= {"cost_usd": cost, "cost_source": "genai-prices"}
    return Checkpoint(
        event_id=stable_id(v.task_id, "model", n),
        time_ns=t_ns,
        task=v,
        source="model_call",
        changed=("tokens",),
        attributes=attrs,
    )


def _warning(v: TaskView, scope: str, subject: str, level: float, used: float, budget: float, t_ns: int) -> Event:
    return BudgetWarning(
        event_id=stable_id(v.task_id, "budget", scope, subject, level),
        time_ns=t_ns,
        task=v,
        scope=scope,  # type: ignore[arg-type]
        unit="usd",
        level=level,
        used=used,
        budget=budget,
        subject=subject,
    )


class Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> float:
        return self.ns / 1e9


def _metrics(clock: Clock) -> tuple[TaskMetrics, CollectorRegistry]:
    metrics = TaskMetrics(clock=clock)
    registry = CollectorRegistry()
    registry.register(TaskCollector(metrics))
    return metrics, registry


def test_ledger_scopes_follow_their_warnings_and_later_calls_then_roll_over() -> None:
    clock = Clock(NOON)
    metrics, reg = _metrics(clock)
    rivet = view("rivet", 1, NOON)
    bolt = view("bolt", 2, NOON)
    metrics.absorb(
        [
            _model_call(rivet, 1, NOON, 8.0),
            _warning(rivet, "agent_day", "rivet:2026-11-22", 0.8, 8.0, 10.0, NOON + 1),
            _warning(rivet, "day", "2026-11-22", 0.8, 8.0, 10.0, NOON + 2),
            _warning(rivet, "month", "2026-11", 0.8, 80.0, 100.0, NOON + 3),
            # bolt spends today too: the day and month grow, rivet's day does not.
            _model_call(bolt, 1, NOON + 10, 1.0),
        ]
    )
    assert val(reg, "spanvisor_budget_used_ratio", scope="agent_day") == pytest.approx(0.8)
    assert val(reg, "spanvisor_budget_used_ratio", scope="day") == pytest.approx(0.9)
    assert val(reg, "spanvisor_budget_used_ratio", scope="month") == pytest.approx(0.81)
    assert val(reg, "spanvisor_budget_used_ratio", scope="task") is None
    assert val(reg, "spanvisor_budget_warnings_total", scope="day", level="warning") == 1
    # The 100 % warning's own total wins; a ratio may pass 1.
    metrics.absorb(
        [
            _model_call(rivet, 2, NOON + 20, 3.0),
            _warning(rivet, "agent_day", "rivet:2026-11-22", 1.0, 11.0, 10.0, NOON + 21),
            _warning(rivet, "day", "2026-11-22", 1.0, 12.0, 10.0, NOON + 22),
        ]
    )
    assert val(reg, "spanvisor_budget_used_ratio", scope="agent_day") == pytest.approx(1.1)
    assert val(reg, "spanvisor_budget_used_ratio", scope="day") == pytest.approx(1.2)
    assert val(reg, "spanvisor_budget_warnings_total", scope="day", level="critical") == 1
    assert val(reg, "spanvisor_cost_usd_total", agent="rivet", model=SONNET) == pytest.approx(11.0)
    # A new UTC day: yesterday's budgets are not today's; the month goes on.
    clock.ns = NEXT_DAY
    assert val(reg, "spanvisor_budget_used_ratio", scope="agent_day") is None
    assert val(reg, "spanvisor_budget_used_ratio", scope="day") is None
    assert val(reg, "spanvisor_budget_used_ratio", scope="month") == pytest.approx(0.84)
    metrics.absorb([_warning(rivet, "day", "2026-11-23", 0.8, 8.5, 10.0, NEXT_DAY)])
    assert val(reg, "spanvisor_budget_used_ratio", scope="day") == pytest.approx(0.85)
    assert set(metrics.spend.ledger["day"]) == {"2026-11-23"}, "an earlier day is forgotten"


def test_the_task_scope_is_the_worst_open_task_with_a_budget() -> None:
    metrics, reg = _metrics(Clock(NOON))
    cheap = view("rivet", 1, NOON, budget_usd=10.0, cost_usd=2.0)
    dear = view("rivet", 2, NOON, budget_usd=1.0, cost_usd=0.5)
    by_tokens = view("bolt", 3, NOON, budget_tokens=1000, input_tokens=600, output_tokens=100)
    no_budget = view("bolt", 4, NOON, cost_usd=50.0)
    metrics.absorb([_model_call(v, 1, NOON, 0.1) for v in (cheap, dear, by_tokens, no_budget)])
    assert val(reg, "spanvisor_budget_used_ratio", scope="task") == pytest.approx(0.7)
    # An older view replayed late does not lower a task's share.
    metrics.absorb([_model_call(dataclasses.replace(dear, cost_usd=0.9), 2, NOON + 1, 0.4)])
    metrics.absorb([_model_call(dear, 3, NOON + 2, 0.0)])
    assert val(reg, "spanvisor_budget_used_ratio", scope="task") == pytest.approx(0.9)


def test_cost_counts_once_per_event_and_odd_values_are_rejected_not_raised() -> None:
    sink, reg = started_sink()
    v = view("rivet", 1, NOON)
    good = _model_call(v, 1, NOON, 0.25)
    events: list[Event] = [
        good,
        good,  # a replay
        _model_call(v, 2, NOON, None),
        _model_call(v, 3, NOON, math.nan),
        _model_call(v, 4, NOON, -1.0),
        dataclasses.replace(_model_call(v, 5, NOON, 0.25), attributes={"model": SONNET, "cost_usd": "0.25"}),
        _warning(v, "galaxy", "x", 0.8, 1.0, 1.0, NOON),  # a scope this version does not know
        _warning(v, "day", "2026-11-22", math.inf, 1.0, 1.0, NOON),
        _warning(v, "month", "2026-11", 0.8, 1.0, 0.0, NOON),
        ContextForecast(
            event_id="fc", time_ns=NOON, task=v, threshold=0.7, ratio=0.6, tokens=6, limit=10, calls=2, eta_s=None
        ),
    ]
    feed(sink, events)
    assert val(reg, "spanvisor_cost_usd_total", agent="rivet", model=SONNET) == pytest.approx(0.25)
    assert val(reg, "spanvisor_unpriced_model_calls_total", agent="rivet") == 1
    assert val(reg, "spanvisor_context_forecasts_total", agent="rivet") == 1
    assert val(reg, "spanvisor_model_calls_total", agent="rivet", model=SONNET) == 5
    state = sink.debug_state()
    # NaN, negative and text costs; the unknown scope, the infinite level, the zero budget.
    assert state["rejected_values"] == 6 and state["duplicates"] == 1
    text = generate_latest(reg).decode()
    assert "galaxy" not in text and "budget_warnings_total{" not in text


def test_budget_series_stay_bounded_whatever_the_tasks_and_days() -> None:
    clock = Clock(NOON)
    metrics, reg = _metrics(clock)
    events: list[Event] = []
    for n in range(300):
        day_ns = NOON + (n % 40) * 86_400 * S
        when = datetime.fromtimestamp(day_ns / 1e9, UTC)
        v = view(f"agent-{n}", n, day_ns, budget_usd=1.0, cost_usd=0.9)
        day, month = when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")
        for scope, subject in (("task", ""), ("agent_day", f"agent-{n}:{day}"), ("day", day), ("month", month)):
            for level in (0.8, 1.0):
                events.append(_warning(v, scope, subject, level, 0.9, 1.0, day_ns))
    metrics.absorb(events)
    clock.ns = NOON + 39 * 86_400 * S
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    assert len(families["spanvisor_budget_warnings"].samples) == 8
    assert {s.labels["scope"] for s in families["spanvisor_budget_used_ratio"].samples} <= {
        "task",
        "agent_day",
        "day",
        "month",
    }
    assert len(families["spanvisor_budget_used_ratio"].samples) == 4
    # Only the latest day (and month) is kept in memory.
    assert len(metrics.spend.ledger["day"]) == 1 and len(metrics.spend.ledger["month"]) == 1


def test_plain_exposition_with_cost_passes_promtool_check_metrics() -> None:
    promtool = require("promtool")
    sink, reg = started_sink()
    v = view("rivet", 1, NOON, budget_usd=1.0, cost_usd=0.5)
    feed(
        sink,
        [
            _model_call(v, 1, NOON, 0.5),
            _model_call(v, 2, NOON, None, model=UNKNOWN),
            _warning(v, "task", "", 0.8, 0.8, 1.0, NOON),
            ContextForecast(
                event_id="fc", time_ns=NOON, task=v, threshold=0.7, ratio=0.6, tokens=6, limit=10, calls=2, eta_s=4.0
            ),
        ],
    )
    out = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=generate_latest(reg), capture_output=True, timeout=30
    )
    assert out.returncode == 0, (out.stdout + out.stderr).decode()
    assert not (out.stdout + out.stderr).strip(), (out.stdout + out.stderr).decode()
