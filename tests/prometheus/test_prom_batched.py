"""The sink's batched absorb against the per-event oracle (prom_oracle.py):
after any sequence of batches, the same scrape, exemplars and counts."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prom_oracle import PerEventMetrics
from prom_streams import S, view
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    BudgetWarning,
    Checkpoint,
    ContextForecast,
    ContextWarning,
    Decision,
    Event,
    HumanIntervention,
    ResultField,
    TaskCorrected,
    TaskFinished,
    TaskResumed,
    TaskStalled,
    TaskStarted,
)
from spanvisor_prometheus.collectors import TaskCollector
from spanvisor_prometheus.state import TaskMetrics

T0 = 1_700_000_000 * S
# Small caps, windows and pools, so that overflow, eviction, duplicates and
# tasks finished before a late event all happen within a few events.
CAPS: dict[str, Any] = {
    "max_agents": 2,
    "max_repos": 2,
    "max_models": 2,
    "dedup_window": 6,
    "max_open_tasks": 3,
    "results": (("score", True), ("precision", False)),
    "clock": lambda: T0 / S + 3600,
}
# Event ids: 32 hex digits (kept as bytes by the dedup window) and test-style ones.
IDS = [f"{n:032x}" for n in range(12)] + ["e1", "e2", "E" * 32]
# A few tasks (agent, number, run), so that one task sees many events.
TASKS = [
    ("rivet", 0, ""),
    ("rivet", 0, "r2"),
    ("rivet", 1, ""),
    ("bolt", 2, ""),
    ("nut", 3, ""),
    ("", 4, ""),
    ("a" * 200, 5, ""),
]
MODELS = [None, "", "m1", "m2", "m3", "x" * 200]
ODD = [math.nan, math.inf, -1.0, True, 3, "7"]
COSTS = st.sampled_from([None, 0.0, -0.0, 0.25, 1e-9, 2.5, *ODD])


@st.composite
def task_views(draw: st.DrawFn) -> Any:
    agent, n, run_id = draw(st.sampled_from(TASKS))
    v = view(
        agent,
        n,
        T0 + draw(st.integers(-5, 50)) * S,
        repo=draw(st.sampled_from([None, "", "acme/app", "b", "c"])),
        run_id=run_id,
        model=draw(st.sampled_from(MODELS)),
        input_tokens=draw(st.integers(0, 3) | st.integers(0, 5000)),
        output_tokens=draw(st.integers(0, 3) | st.integers(0, 500)),
        context_tokens=draw(st.none() | st.integers(0, 1500)),
        context_limit=draw(st.sampled_from([None, 0, 1000])),
        budget_usd=draw(st.sampled_from([None, 0.0, 1.0])),
        budget_tokens=draw(st.sampled_from([None, 100])),
        cost_usd=draw(st.sampled_from([0.0, 0.5, 2.0])),
        results=draw(
            st.lists(
                st.builds(ResultField, name=st.sampled_from(["score", "precision", "other"]), value=COSTS.filter(bool)),
                max_size=2,
            )
        ),
    )
    return v


@st.composite
def events(draw: st.DrawFn) -> Event:
    base: dict[str, Any] = {
        "event_id": draw(st.sampled_from(IDS)),
        # Thirds of a second apart: same-time, older and later events of a task.
        "time_ns": T0 + draw(st.integers(-3, 12)) * (S // 3),
        "task": draw(task_views()),
    }
    kind = draw(st.integers(0, 11))
    if kind <= 2:  # model calls and checkpoints weigh most, as in a real load
        attrs: dict[str, object] = {}
        for name, values in (
            ("model", st.sampled_from([*MODELS, 5])),
            ("cost_usd", COSTS),
            ("cost_source", st.sampled_from(["unpriced", "genai-prices"])),
        ):
            if draw(st.booleans()):
                attrs[name] = draw(values)
        source = draw(st.sampled_from(["model_call", "model_call", "event", "tool_call"]))
        return Checkpoint(**base, source=source, attributes=attrs)
    if kind == 3:
        return TaskStarted(**base)
    if kind == 4:
        level = draw(st.sampled_from(["warning", "critical"]))
        return ContextWarning(
            **base,
            level=level,
            threshold=0.7,
            ratio=draw(st.sampled_from([0.5, 0.9, 1.5, math.nan])),
            tokens=9,
            limit=10,
        )
    if kind == 5:
        return ContextForecast(**base, threshold=0.85, ratio=0.6, tokens=6, limit=10, calls=3, eta_s=None)
    if kind == 6:
        scope = draw(st.sampled_from(["task", "agent_day", "day", "month", "week"]))
        subject = draw(st.sampled_from(["", "rivet:2023-11-14", "2023-11-14", "2023-11", "2023-11-15"]))
        used = draw(st.sampled_from([0.5, 1.5, math.nan]))
        return BudgetWarning(
            **base,
            scope=scope,
            unit="usd",
            level=used,
            used=used,
            budget=draw(st.sampled_from([0.0, 1.0])),
            subject=subject,
        )
    if kind == 7:
        outcome = draw(st.sampled_from(["complete", "error", "cancelled", "lost", "evicted"]))
        return TaskFinished(
            **base, outcome=outcome, duration_s=draw(st.sampled_from([0.5, 42.0, 700.0, 1e6, -1.0, math.nan]))
        )
    if kind == 8:
        late = draw(st.lists(events().filter(lambda e: isinstance(e, Checkpoint)), max_size=2))
        return TaskCorrected(
            **base,
            span_id="00000000000000aa",
            added_input_tokens=draw(st.integers(-1, 300)),
            added_output_tokens=draw(st.integers(-1, 30)),
            added_cost_usd=draw(COSTS.filter(lambda c: c is not None)),
            added_unpriced_calls=draw(st.integers(0, 2)),
            facts=tuple(late),
        )
    if kind == 9:
        decision = Decision(
            intervention_id=base["event_id"],
            task_id=base["task"].task_id,
            action=draw(st.sampled_from(["approve", "reject", "cancel", "retry", "acknowledge", "shrug"])),
            actor_id="U1",
            time_ns=base["time_ns"],
        )
        outcome = draw(st.sampled_from(["applied", "denied", "maybe"]))
        return HumanIntervention(**base, decision=decision, outcome=outcome, known=draw(st.booleans()))
    if kind == 10:
        return ArtifactAdded(**base, artifact=Artifact(name="report.md"))
    return draw(st.sampled_from([TaskStalled, TaskResumed]))(**base, idle_s=30.0)


def scrape(m: TaskMetrics) -> tuple[bytes, tuple[Any, ...]]:
    registry = CollectorRegistry()
    registry.register(TaskCollector(m))
    counts = (m.duplicates, m.rejected_values, m.evicted_open, list(m.open), list(m._finished), m.overflow)
    return generate_openmetrics(registry), counts


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(events(), max_size=8), max_size=6))
def test_batches_scrape_as_the_per_event_code_does(batches: list[list[Event]]) -> None:
    batched, oracle = TaskMetrics(**CAPS), PerEventMetrics(**CAPS)
    for batch in batches:
        assert batched.absorb(batch) == oracle.absorb(batch)
        assert scrape(batched) == scrape(oracle)
