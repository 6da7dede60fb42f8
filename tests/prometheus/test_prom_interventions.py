"""People's decisions and task results in Prometheus:
``spanvisor_interventions_total{action,outcome}``, results only when
configured, and a view not known here (``known=False``) never moves a task."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest
from prom_streams import S, feed, lifecycle, started_sink, val
from prom_tools import require
from prometheus_client import generate_latest

from spanvisor.config import Config, ConfigError
from spanvisor.events import Decision, HumanIntervention, ResultField, TaskFinished, TaskView, stable_id
from spanvisor_prometheus.settings import SETTINGS

T0 = 1_700_000_000 * S


def click(view: TaskView, n: int, action: str = "approve", **kw: object) -> HumanIntervention:
    d = Decision(stable_id("click", n), view.task_id, action, "U1", T0 + n * S, approval_id="a1")  # type: ignore[arg-type]
    return HumanIntervention(event_id=d.intervention_id, time_ns=d.time_ns, task=view, decision=d, **kw)  # type: ignore[arg-type]


def bare(task_id: str) -> TaskView:
    return TaskView(task_id=task_id, trace_id="", root_span_id="", agent_id="unknown")


def test_interventions_are_counted_once_by_action_and_outcome() -> None:
    sink, reg = started_sink()
    open_task = lifecycle("rivet", 1, T0, checkpoints=2, outcome=None)
    done = lifecycle("bolt", 2, T0, checkpoints=1)
    view = open_task[-1].task
    clicks = [
        click(dataclasses.replace(view, seq=view.seq + 1), 1),
        click(view, 2, "cancel", outcome="denied", reason="not allowed", known=False),
        click(done[-1].task, 3, "retry", known=False),
        click(bare("elsewhere"), 4, "acknowledge", known=False),
        click(bare("elsewhere"), 5, "acknowledge", outcome="denied", reason="not allowed", known=False),
    ]
    feed(sink, open_task + done)
    before = generate_latest(reg)
    feed(sink, clicks)
    feed(sink, clicks[::-1])  # replayed: counted once
    assert val(reg, "spanvisor_interventions_total", action="approve", outcome="applied") == 1
    assert val(reg, "spanvisor_interventions_total", action="cancel", outcome="denied") == 1
    assert val(reg, "spanvisor_interventions_total", action="retry", outcome="applied") == 1
    assert val(reg, "spanvisor_interventions_total", action="acknowledge", outcome="applied") == 1
    assert val(reg, "spanvisor_interventions_total", action="acknowledge", outcome="denied") == 1
    # Nothing else moved: no task opened for a bare view (no agent "unknown"),
    # the finished one stays finished, and a click is not the agent's activity.
    after = b"\n".join(line for line in generate_latest(reg).splitlines() if b"spanvisor_interventions" not in line)
    assert after == b"\n".join(line for line in before.splitlines() if b"spanvisor_interventions" not in line)
    assert val(reg, "spanvisor_tasks_running", agent="unknown") is None
    assert val(reg, "spanvisor_tasks_running", agent="bolt") == 0
    assert b"elsewhere" not in generate_latest(reg) and view.task_id.encode() not in generate_latest(reg)


def _finished_with(agent: str, n: int, results: tuple[ResultField, ...]) -> list[object]:
    events = lifecycle(agent, n, T0 + n * 60 * S, checkpoints=1)
    fin = events[-1]
    assert isinstance(fin, TaskFinished)
    return [*events[:-1], dataclasses.replace(fin, task=dataclasses.replace(fin.task, results=results))]


def test_results_are_exported_only_when_configured() -> None:
    sink, reg = started_sink(
        prometheus_results=Config.load(
            env={"SPANVISOR_PROMETHEUS_RESULTS": "prs_opened:sum, precision, verified, label"}, extra=SETTINGS
        ).get("prometheus_results")
    )
    first = (
        ResultField("prs_opened", 3),
        ResultField("precision", 0.91),
        ResultField("verified", True),
        ResultField("label", "green"),  # a string: never a metric
        ResultField("arr_gain_1h", 4820.0, "USD"),  # not configured
    )
    second = (ResultField("prs_opened", 2), ResultField("precision", 0.94), ResultField("verified", False))
    events = _finished_with("rivet", 1, first) + _finished_with("rivet", 2, second)
    feed(sink, events)  # type: ignore[arg-type]
    feed(sink, events)  # type: ignore[arg-type]
    assert reg.get_sample_value("spanvisor_task_result", {"agent": "rivet", "name": "precision"}) == 0.94
    assert reg.get_sample_value("spanvisor_task_result", {"agent": "rivet", "name": "prs_opened"}) == 2
    assert reg.get_sample_value("spanvisor_task_result", {"agent": "rivet", "name": "verified"}) == 0
    assert reg.get_sample_value("spanvisor_task_result_sum_total", {"agent": "rivet", "name": "prs_opened"}) == 5
    assert reg.get_sample_value("spanvisor_task_result_sum_total", {"agent": "rivet", "name": "precision"}) is None
    text = generate_latest(reg)
    assert b"arr_gain" not in text and b"green" not in text and b'name="label"' not in text
    assert sink.metrics.rejected_values == 1  # the string, once (the replay is not counted)

    # Unconfigured: no result series at all.
    _, plain = started_sink()
    assert b"spanvisor_task_result" not in generate_latest(plain)


def test_results_setting_is_checked() -> None:
    cfg = Config.load(env={"SPANVISOR_PROMETHEUS_RESULTS": "a:sum,b,a"}, extra=SETTINGS)
    assert cfg.get("prometheus_results") == (("a", True), ("b", False))
    for bad in ("has space", "x:avg", "q;drop", ",".join(f"n{i}" for i in range(21))):
        with pytest.raises(ConfigError, match="prometheus_results"):
            Config.load(env={"SPANVISOR_PROMETHEUS_RESULTS": bad}, extra=SETTINGS)


def test_exposition_with_interventions_and_results_passes_promtool() -> None:
    promtool = require("promtool")
    sink, reg = started_sink(prometheus_results=(("prs_opened", True),))
    events = _finished_with("rivet", 1, (ResultField("prs_opened", 3),))
    feed(sink, [*events, click(bare("x"), 1, "cancel", known=False)])  # type: ignore[list-item]
    out = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=generate_latest(reg), capture_output=True, timeout=30
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_break_glass_approvals_are_counted_once_and_refused_ones_not() -> None:
    sink, reg = started_sink()
    open_task = lifecycle("rivet", 1, T0, checkpoints=2, outcome=None)
    view = open_task[-1].task
    feed(sink, open_task)
    assert val(reg, "spanvisor_break_glass_total") == 0  # there from the start, for the alert's first increase

    def glass(n: int, **kw: object) -> HumanIntervention:
        ev = click(dataclasses.replace(view, seq=view.seq + n), n, **kw)
        d = dataclasses.replace(ev.decision, break_glass=True, comment="prod down", person="carol", verified=True)
        return dataclasses.replace(ev, decision=d)

    events = [glass(1), glass(2, outcome="denied", reason="not in the group", code="not_in_group"), click(view, 3)]
    feed(sink, events)
    feed(sink, events)  # replayed: counted once
    assert val(reg, "spanvisor_break_glass_total") == 1
    assert val(reg, "spanvisor_interventions_total", action="approve", outcome="applied") == 2


def test_budget_stops_are_counted_once_and_a_persons_cancel_is_not_one() -> None:
    sink, reg = started_sink()
    open_task = lifecycle("rivet", 1, T0, checkpoints=2, outcome=None)
    view = open_task[-1].task
    feed(sink, open_task)
    assert val(reg, "spanvisor_budget_stops_total") == 0  # there from the start

    def by_budget(n: int, **kw: object) -> HumanIntervention:
        ev = click(dataclasses.replace(view, seq=view.seq + n), n, "cancel", **kw)
        d = dataclasses.replace(ev.decision, actor_id="spanvisor:budget", actor_name="budget", source="budget")
        return dataclasses.replace(ev, decision=d)

    events = [
        by_budget(1),
        by_budget(2, outcome="denied", reason="finished", code="finished"),
        click(view, 3, "cancel"),
    ]
    feed(sink, events)
    feed(sink, events)  # replayed: counted once
    assert val(reg, "spanvisor_budget_stops_total") == 1
    assert val(reg, "spanvisor_interventions_total", action="cancel", outcome="applied") == 2
