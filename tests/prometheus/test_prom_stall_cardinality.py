"""The per-task stall clock, and series counts that stay linear in the label caps."""

from __future__ import annotations

import dataclasses

import pytest
from prom_streams import S, feed, lifecycle, started_sink, val, view
from prometheus_client import CollectorRegistry, generate_latest

from spanvisor.events import Artifact, ArtifactAdded, Checkpoint, ContextWarning, Event, TaskStarted, stable_id

T0 = 1_700_000_000 * S
STALEST = "spanvisor_stalest_task_activity_timestamp_seconds"
LAST = "spanvisor_last_checkpoint_timestamp_seconds"


def start(n: int, at_s: float, agent: str = "rivet") -> tuple[TaskStarted, object]:
    v = view(agent, n, T0 + int(at_s * S))
    return TaskStarted(event_id=stable_id(v.task_id, "start"), time_ns=v.started_ns, task=v), v


def test_a_silent_task_is_not_hidden_by_a_busy_sibling() -> None:
    sink, reg = started_sink()
    silent, _ = start(1, 0)
    busy_start, busy = start(2, 0)
    feed(sink, [silent, busy_start])
    # The busy task checkpoints every 5 minutes for 40 minutes.
    for i in range(1, 9):
        t = T0 + i * 300 * S
        v = dataclasses.replace(busy, updated_ns=t, progress=float(i))  # type: ignore[type-var]
        feed(sink, [Checkpoint(event_id=stable_id("busy", i), time_ns=t, task=v, source="model_call")])
    assert val(reg, LAST, agent="rivet") == T0 / S + 2400  # the old gauge: looks busy
    assert val(reg, STALEST, agent="rivet") == T0 / S  # the silent task's start
    assert val(reg, "spanvisor_tasks_running", agent="rivet") == 2


def test_warnings_and_artifacts_are_activity_and_replays_do_not_move_it_back() -> None:
    sink, reg = started_sink()
    ev, v = start(1, 0)
    feed(sink, [ev])
    warn = ContextWarning(
        event_id="w1",
        time_ns=T0 + 600 * S,
        task=v,  # type: ignore[arg-type]
        level="warning",
        threshold=0.7,
        ratio=0.75,
        tokens=75_000,
        limit=100_000,
    )
    feed(sink, [warn])
    assert val(reg, STALEST, agent="rivet") == T0 / S + 600
    art = ArtifactAdded(event_id="a1", time_ns=T0 + 900 * S, task=v, artifact=Artifact("r.md"))  # type: ignore[arg-type]
    feed(sink, [art])
    assert val(reg, STALEST, agent="rivet") == T0 / S + 900
    # An old event delivered late (another id): the clock stays.
    old = Checkpoint(event_id="old", time_ns=T0 + 60 * S, task=v, source="model_call")  # type: ignore[arg-type]
    feed(sink, [old])
    assert val(reg, STALEST, agent="rivet") == T0 / S + 900


def test_stalest_is_absent_without_open_tasks() -> None:
    sink, reg = started_sink()
    feed(sink, lifecycle("rivet", 1, T0, checkpoints=2))
    assert val(reg, "spanvisor_tasks_running", agent="rivet") == 0
    assert val(reg, STALEST, agent="rivet") is None
    assert val(reg, LAST, agent="rivet") is not None  # kept for compatibility
    feed(sink, lifecycle("rivet", 2, T0 + 100 * S, checkpoints=2, outcome=None, duration_s=30))
    assert val(reg, STALEST, agent="rivet") == pytest.approx(T0 / S + 100 + 20)


def series(reg: CollectorRegistry, name: str) -> int:
    return sum(1 for line in generate_latest(reg).decode().splitlines() if line.startswith(name + "{"))


@pytest.mark.parametrize(("max_agents", "max_pairs"), [(50, 50), (10, 30), (5, 3)])
def test_agent_repo_series_stay_linear_in_the_caps(max_agents: int, max_pairs: int) -> None:
    sink, reg = started_sink(metrics_max_agents=max_agents, metrics_max_repos=max_pairs)
    outcomes = ("complete", "error", "cancelled")
    events: list[Event] = []
    n = 0
    for a in range(max_agents + 10):
        for r in range(max_pairs + 10):
            for outcome in outcomes:
                n += 1
                events += lifecycle(f"agent-{a}", n, T0, checkpoints=0, outcome=outcome, repo=f"org/repo-{r}")
    feed(sink, events)
    agents = max_agents + 1  # the admitted ones and "other"
    worst_started = max_pairs + agents  # admitted pairs, and repo="other" once per agent
    assert series(reg, "spanvisor_tasks_started_total") == worst_started
    assert series(reg, "spanvisor_tasks_finished_total") == 3 * worst_started
    assert series(reg, "spanvisor_task_duration_seconds_count") == 3 * agents
    assert val(reg, "spanvisor_label_overflow_total", label="repo") > 0  # type: ignore[operator]


def test_a_pair_keeps_its_repo_once_admitted() -> None:
    sink, reg = started_sink(metrics_max_repos=2)
    feed(sink, lifecycle("rivet", 1, T0, checkpoints=0, repo="org/a"))
    feed(sink, lifecycle("bolt", 2, T0, checkpoints=0, repo="org/a"))
    feed(sink, lifecycle("bolt", 3, T0, checkpoints=0, repo="org/b"))  # a third pair: other
    feed(sink, lifecycle("rivet", 4, T0, checkpoints=0, repo="org/a"))
    assert val(reg, "spanvisor_tasks_started_total", agent="rivet", repo="org/a") == 2
    assert val(reg, "spanvisor_tasks_started_total", agent="bolt", repo="org/a") == 1
    assert val(reg, "spanvisor_tasks_started_total", agent="bolt", repo="other") == 1
    assert val(reg, "spanvisor_tasks_finished_total", agent="bolt", repo="other", outcome="complete") == 1
