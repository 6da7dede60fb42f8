"""The metrics sink against hand-built event streams."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prom_streams import S, feed, lifecycle, make_ctx, run, started_sink, val, view
from prom_tools import require
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from spanvisor.config import Config, ConfigError
from spanvisor.events import Checkpoint, Event, TaskFinished, stable_id
from spanvisor.sink import SinkResult
from spanvisor_prometheus import SHARED_REGISTRY_KEY, PrometheusSink
from spanvisor_prometheus.settings import SETTINGS

T0 = 1_700_000_000 * S
SONNET = "claude-sonnet-4"


def demo_stream() -> list[Event]:
    return (
        lifecycle("rivet", 1, T0, checkpoints=4, peak_ratio=0.9, duration_s=42, model=SONNET, agent_checkpoints=True)
        + lifecycle("rivet", 2, T0, checkpoints=2, outcome="error", duration_s=3)
        + lifecycle("bolt", 3, T0, checkpoints=5, outcome=None, peak_ratio=0.6, repo=None, agent_checkpoints=True)
        + lifecycle("bolt", 4, T0, checkpoints=1, outcome="cancelled", duration_s=700)
    )


def test_counts_from_a_stream() -> None:
    sink, reg = started_sink()
    feed(sink, demo_stream())
    assert val(reg, "spanvisor_tasks_started_total", agent="rivet", repo="acme/app") == 2
    assert val(reg, "spanvisor_tasks_started_total", agent="bolt", repo="") == 1
    assert val(reg, "spanvisor_tasks_finished_total", agent="rivet", repo="acme/app", outcome="complete") == 1
    assert val(reg, "spanvisor_tasks_finished_total", agent="rivet", repo="acme/app", outcome="error") == 1
    assert val(reg, "spanvisor_tasks_finished_total", agent="bolt", repo="acme/app", outcome="cancelled") == 1
    # The agents' own checkpoints, and model calls apart (they used to add up).
    assert val(reg, "spanvisor_checkpoints_total", agent="rivet") == 4
    assert val(reg, "spanvisor_checkpoints_total", agent="bolt") == 5
    assert val(reg, "spanvisor_model_calls_total", agent="rivet", model=SONNET) == 4
    assert val(reg, "spanvisor_model_calls_total", agent="rivet", model="") == 2
    assert val(reg, "spanvisor_model_calls_total", agent="bolt", model="") == 6
    assert val(reg, "spanvisor_context_warnings_total", agent="rivet", level="warning") == 1
    assert val(reg, "spanvisor_context_warnings_total", agent="rivet", level="critical") == 1
    # Running totals in the views become counter increments: 4 + 2 steps of 1000.
    assert val(reg, "spanvisor_tokens_total", agent="rivet", direction="input") == 6000
    assert val(reg, "spanvisor_tokens_total", agent="rivet", direction="output") == 600
    assert val(reg, "spanvisor_tokens_total", agent="bolt", direction="input") == 6000
    assert val(reg, "spanvisor_task_duration_seconds_count", agent="rivet", outcome="complete") == 1
    assert val(reg, "spanvisor_task_duration_seconds_sum", agent="bolt", outcome="cancelled") == 700
    assert val(reg, "spanvisor_task_duration_seconds_bucket", agent="bolt", outcome="cancelled", le="600.0") == 0
    assert val(reg, "spanvisor_task_duration_seconds_bucket", agent="bolt", outcome="cancelled", le="1800.0") == 1
    assert val(reg, "spanvisor_tasks_running", agent="bolt") == 1
    assert val(reg, "spanvisor_tasks_running", agent="rivet") == 0
    assert val(reg, "spanvisor_context_utilization_ratio", agent="bolt") == pytest.approx(0.6)
    assert val(reg, "spanvisor_context_utilization_ratio", agent="rivet") == 0
    assert val(reg, "spanvisor_oldest_task_start_timestamp_seconds", agent="bolt") == T0 / S
    assert val(reg, "spanvisor_oldest_task_start_timestamp_seconds", agent="rivet") is None
    assert val(reg, "spanvisor_build_info", version="0.1.0") == 1
    # The latest checkpoint of bolt's open task: 5 of 5 steps in 42 s.
    last = val(reg, "spanvisor_last_checkpoint_timestamp_seconds", agent="bolt")
    assert last == pytest.approx(T0 / S + 5 * 7.0)


def test_worst_open_task_per_agent_and_compaction() -> None:
    sink, reg = started_sink()
    a = lifecycle("rivet", 1, T0, checkpoints=3, peak_ratio=0.3, outcome=None)
    b = lifecycle("rivet", 2, T0, checkpoints=3, peak_ratio=0.8, outcome=None)
    feed(sink, a + b)
    assert val(reg, "spanvisor_tasks_running", agent="rivet") == 2
    assert val(reg, "spanvisor_context_utilization_ratio", agent="rivet") == pytest.approx(0.8)
    # Task 2 compacts its context: the latest view wins, not the peak.
    last = b[-1].task
    compacted = dataclasses.replace(last, context_tokens=10_000)
    feed(sink, [Checkpoint(event_id=stable_id("compact"), time_ns=T0 + 50 * S, task=compacted)])
    assert val(reg, "spanvisor_context_utilization_ratio", agent="rivet") == pytest.approx(0.3)
    # Over-limit usage reads 1 (the gauge is a 0-1 ratio); then task 1 finishes.
    over = dataclasses.replace(a[-1].task, context_tokens=250_000)
    feed(sink, [Checkpoint(event_id=stable_id("over"), time_ns=T0 + 51 * S, task=over)])
    assert val(reg, "spanvisor_context_utilization_ratio", agent="rivet") == 1.0
    feed(
        sink,
        [TaskFinished(event_id=stable_id("end1"), time_ns=T0 + 60 * S, task=over, outcome="complete", duration_s=60)],
    )
    assert val(reg, "spanvisor_context_utilization_ratio", agent="rivet") == pytest.approx(0.1)
    feed(
        sink,
        [
            TaskFinished(
                event_id=stable_id("end2"), time_ns=T0 + 61 * S, task=compacted, outcome="complete", duration_s=61
            )
        ],
    )
    assert val(reg, "spanvisor_tasks_running", agent="rivet") == 0
    assert val(reg, "spanvisor_context_utilization_ratio", agent="rivet") == 0
    # A late event of a finished task does not reopen it.
    feed(sink, [Checkpoint(event_id=stable_id("late"), time_ns=T0 + 62 * S, task=compacted)])
    assert val(reg, "spanvisor_tasks_running", agent="rivet") == 0


def exposition(reg: CollectorRegistry) -> list[str]:
    """Sample lines, without the build info (stable across runs)."""
    return sorted(line for line in generate_latest(reg).decode().splitlines() if not line.startswith("#"))


def test_replays_are_counted_once() -> None:
    events = demo_stream()
    once, reg1 = started_sink()
    feed(once, events)
    replayed, reg2 = started_sink()
    rng = random.Random(7)
    # Retries resend whole batches; replays resend a task's events from the start.
    for i in range(0, len(events), 5):
        feed(replayed, events[i : i + 5])
        feed(replayed, events[max(0, i - rng.randint(0, 10)) : i + 5])
    feed(replayed, events)
    assert exposition(reg2) == exposition(reg1)
    assert replayed.debug_state()["duplicates"] >= len(events)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), max_size=12))
def test_any_replay_pattern_gives_the_same_metrics(replays: list[tuple[int, int]]) -> None:
    events = demo_stream()
    baseline, reg1 = started_sink()
    feed(baseline, events)
    sink, reg2 = started_sink()
    feed(sink, events)
    for start, length in replays:
        feed(sink, events[start : start + length])
    assert exposition(reg2) == exposition(reg1)


def test_agent_and_repo_labels_are_capped() -> None:
    sink, reg = started_sink(metrics_max_agents=2, metrics_max_repos=1)
    events: list[Event] = []
    for i in range(5):
        events += lifecycle(f"agent-{i}", i, T0, checkpoints=1, repo=f"repo-{i}")
    feed(sink, events)
    text = generate_latest(reg).decode()
    assert 'agent="agent-0"' in text and 'agent="agent-1"' in text
    assert 'agent="agent-2"' not in text and 'repo="repo-1"' not in text
    assert val(reg, "spanvisor_tasks_started_total", agent="other", repo="other") == 3
    assert val(reg, "spanvisor_tasks_finished_total", agent="other", repo="other", outcome="complete") == 3
    assert val(reg, "spanvisor_model_calls_total", agent="other", model="") == 3
    # Every event of the 3 overflowing agents is one agent overflow (3 x 3 events).
    assert val(reg, "spanvisor_label_overflow_total", label="agent") == 9
    assert val(reg, "spanvisor_label_overflow_total", label="repo") == 8


def test_no_task_or_trace_id_ever_becomes_a_label() -> None:
    sink, reg = started_sink()
    events = demo_stream()
    feed(sink, events)
    text = generate_latest(reg).decode()
    for ev in events:
        assert ev.task.trace_id not in text
        assert ev.task.task_id not in text


def test_exemplars_carry_the_trace_id_in_openmetrics_only() -> None:
    sink, reg = started_sink()
    long_trace = "f" * 300
    events = lifecycle("rivet", 1, T0, checkpoints=2, agent_checkpoints=True)
    events += [
        dataclasses.replace(
            e,
            event_id=e.event_id + "x",
            task=dataclasses.replace(e.task, agent_id="bolt", trace_id=long_trace, task_id="long"),
        )
        for e in lifecycle("bolt", 2, T0, checkpoints=1)
    ]
    feed(sink, events)
    om = generate_openmetrics(reg).decode()
    trace = events[0].task.trace_id
    started = next(line for line in om.splitlines() if line.startswith('spanvisor_tasks_started_total{agent="rivet"'))
    assert f'# {{trace_id="{trace}"}} 1.0 {T0 / S}' in started
    assert any(
        line.startswith('spanvisor_task_duration_seconds_bucket{agent="rivet",le="60.0"')
        and f'trace_id="{trace}"' in line
        for line in om.splitlines()
    )
    for name in ("checkpoints_total", "model_calls_total", "tokens_total", "tasks_finished_total"):
        assert any(line.startswith(f"spanvisor_{name}") and "trace_id=" in line for line in om.splitlines()), name
    # OpenMetrics caps an exemplar's labels at 128 characters.
    assert 'trace_id="' + "f" * 120 + '"' in om and "f" * 121 not in om
    assert "trace_id" not in generate_latest(reg).decode()


def test_no_created_series_whatever_the_environment() -> None:
    assert "PROMETHEUS_DISABLE_CREATED_SERIES" not in os.environ
    sink, reg = started_sink()
    feed(sink, demo_stream())
    run(sink.start(make_ctx()))  # a second start must not duplicate collectors either
    for text in (generate_latest(reg).decode(), generate_openmetrics(reg).decode()):
        assert "_created" not in text


def test_plain_exposition_passes_promtool_check_metrics() -> None:
    promtool = require("promtool")
    sink, reg = started_sink()
    feed(sink, demo_stream())
    stats = sink.ctx.stats  # type: ignore[union-attr]
    stats.inc("spans_received_total", 10, path="processor")
    stats.inc("sink_deliveries_total", 3, sink="slack", outcome="success")
    stats.observe("sink_latency_seconds", 0.03, sink="slack")
    stats.gauge("queue_depth", lambda: 4, sink="slack")
    stats.drop("queue_full", 2, sink="slack")
    stats.inc("slack_errors_total", error="ratelimited", method="chat.update")
    out = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=generate_latest(reg), capture_output=True, timeout=30
    )
    assert out.returncode == 0, (out.stdout + out.stderr).decode()
    assert not (out.stdout + out.stderr).strip(), (out.stdout + out.stderr).decode()


def test_pipeline_self_metrics_follow_the_stats_table() -> None:
    from spanvisor.stats import METRICS

    sink, reg = started_sink()
    stats = sink.ctx.stats  # type: ignore[union-attr]
    stats.inc("spans_received_total", 7, path="receiver")
    stats.inc("events_emitted_total", 2, kind="Checkpoint")
    stats.observe("sink_latency_seconds", 0.2, sink="postgres")
    stats.gauge("outbox_events", lambda: 12, sink="postgres")
    stats.gauge("queue_depth", lambda: 1 / 0, sink="broken")
    stats.inbox_drop()
    stats.inbox_drop()
    assert val(reg, "spanvisor_spans_received_total", path="receiver") == 7
    assert val(reg, "spanvisor_events_emitted_total", kind="Checkpoint") == 2
    assert val(reg, "spanvisor_outbox_events", sink="postgres") == 12
    assert val(reg, "spanvisor_dropped_total", reason="inbox_full", sink="") == 2
    assert val(reg, "spanvisor_sink_latency_seconds_bucket", sink="postgres", le="0.25") == 1
    assert val(reg, "spanvisor_sink_latency_seconds_bucket", sink="postgres", le="0.1") == 0
    assert val(reg, "spanvisor_sink_latency_seconds_count", sink="postgres") == 1
    assert val(reg, "spanvisor_queue_depth", sink="broken") is None  # left out, scrape works
    text = generate_latest(reg).decode()
    for key in METRICS:
        assert f"# TYPE spanvisor_{key} " in text, key


def test_plugin_stats_outside_the_table_are_exposed_too() -> None:
    sink, reg = started_sink()
    stats = sink.ctx.stats  # type: ignore[union-attr]
    stats.inc("slack_calls_total", 3, method="chat.postMessage")
    stats.gauge("slack_open_tasks", lambda: 2)
    stats.inc("weird-name_total")
    stats.inc("no_suffix")
    assert val(reg, "spanvisor_slack_calls_total", method="chat.postMessage") == 3
    assert val(reg, "spanvisor_slack_open_tasks") == 2
    text = generate_latest(reg).decode()
    assert "weird" not in text and "no_suffix" not in text


def test_bad_values_are_rejected_without_breaking_anything() -> None:
    sink, reg = started_sink()
    huge = "a" * 1_000_000
    v = view(huge, 1, T0, context_limit=1000, context_tokens=500)
    nan_ratio = dataclasses.replace(v, context_tokens=-5, input_tokens=-3)
    feed(
        sink,
        [
            Checkpoint(event_id="c1", time_ns=T0, task=v),
            Checkpoint(event_id="c2", time_ns=T0, task=nan_ratio),
            TaskFinished(event_id="f1", time_ns=T0, task=v, outcome="error", duration_s=math.nan),
        ],
    )
    agent = "a" * 128
    assert val(reg, "spanvisor_checkpoints_total", agent=agent) == 2
    assert val(reg, "spanvisor_tasks_finished_total", agent=agent, repo="acme/app", outcome="error") == 1
    assert val(reg, "spanvisor_task_duration_seconds_count", agent=agent, outcome="error") is None
    assert sink.debug_state()["rejected_values"] == 1
    # Not an event at all: a failure result and a counted drop, never an exception.
    assert run(sink.export([object()])) is SinkResult.FAILURE  # type: ignore[list-item]
    assert val(reg, "spanvisor_dropped_total", reason="metrics_error", sink="prometheus") == 1


def test_registry_is_fresh_per_sink_and_shared_with_serve() -> None:
    a, b = PrometheusSink(), PrometheusSink()
    assert a.registry is not b.registry
    ctx = make_ctx()
    run(a.start(ctx))
    assert ctx.shared[SHARED_REGISTRY_KEY] is a.registry
    assert a.bound_port is None and a.server is None
    run(a.shutdown(1))
    assert generate_latest(a.registry) == b""


def test_settings_and_enabled() -> None:
    cfg = Config.load(env={"SPANVISOR_METRICS_PORT": "9464"}, extra=SETTINGS)
    assert cfg["metrics_port"] == 9464 and cfg["metrics_host"] == "127.0.0.1"
    assert PrometheusSink.enabled(cfg)
    assert not PrometheusSink.enabled(Config.load(env={}, extra=SETTINGS))
    for bad in ("0", "70000", "-1", "http"):
        with pytest.raises(ConfigError, match="metrics_port"):
            Config.load(env={"SPANVISOR_METRICS_PORT": bad}, extra=SETTINGS)
    with pytest.raises(ConfigError, match="metrics_max_agents"):
        Config.load(env={"SPANVISOR_METRICS_MAX_AGENTS": "0"}, extra=SETTINGS)


def test_last_checkpoint_never_moves_back() -> None:
    sink, reg = started_sink()
    new = lifecycle("rivet", 1, T0 + 3600 * S, checkpoints=1)
    old = lifecycle("rivet", 2, T0, checkpoints=1)
    feed(sink, new + old)
    assert val(reg, "spanvisor_last_checkpoint_timestamp_seconds", agent="rivet") == pytest.approx(T0 / S + 3600 + 21)
