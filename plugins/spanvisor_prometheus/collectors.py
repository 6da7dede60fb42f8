"""Custom collectors: task metrics, the pipeline's self-metrics, build info.

Custom collectors (rather than ``Counter``/``Gauge`` objects) never emit
``_created`` series, whatever ``PROMETHEUS_DISABLE_CREATED_SERIES`` says, and
they do not flip prometheus_client's process-wide switch, which the agent
hosting us may rely on for its own metrics.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar as PromExemplar

from spanvisor.stats import METRICS, PipelineStats
from spanvisor_prometheus.series import CounterData, Exemplar, HistogramData
from spanvisor_prometheus.state import TaskMetrics

PREFIX = "spanvisor_"
_VALID_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
log = logging.getLogger("spanvisor.prometheus")


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _exemplar(e: Exemplar | None) -> PromExemplar | None:
    if e is None:
        return None
    return PromExemplar({"trace_id": e.trace_id}, e.value, e.timestamp)


def _counter(name: str, doc: str, data: CounterData) -> CounterMetricFamily:
    fam = CounterMetricFamily(PREFIX + name, doc, labels=data.labelnames)
    for key, value in data.values.items():
        fam.add_metric(key, value, exemplar=_exemplar(data.exemplars.get(key)))
    return fam


def _histogram(name: str, doc: str, data: HistogramData) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(PREFIX + name, doc, labels=data.labelnames)
    bounds = [_le(b) for b in (*data.buckets, math.inf)]
    for key, s in data.series.items():
        cumulative = 0
        buckets: list[tuple[str, float] | tuple[str, float, PromExemplar | None]] = []
        for bound, n, ex in zip(bounds, s.counts, s.exemplars, strict=True):
            cumulative += n
            buckets.append((bound, cumulative, _exemplar(ex)))
        fam.add_metric(key, buckets, s.total)  # type: ignore[arg-type]
    return fam


class TaskCollector(Collector):
    def __init__(self, metrics: TaskMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        with m.lock:
            fams: list[Metric] = [
                _counter(
                    "tasks_started",
                    "Tasks started, by agent and repo (repo 'other' past the cap on (agent, repo) pairs).",
                    m.started,
                ),
                _counter(
                    "tasks_finished",
                    "Tasks finished, by agent, repo and outcome (complete, error, cancelled, lost, evicted).",
                    m.finished,
                ),
                _histogram("task_duration_seconds", "Task duration from start to finish.", m.duration),
                _counter(
                    "checkpoints",
                    "The agents' own checkpoints: checkpoint events and changes of progress, step, message or "
                    "status (model calls are in spanvisor_model_calls_total).",
                    m.checkpoints,
                ),
                _counter(
                    "model_calls",
                    "Model calls that reported token usage, by agent and model (model 'other' past the cap on "
                    "(agent, model) pairs).",
                    m.model_calls,
                ),
                _counter("context_warnings", "Context-window warnings, by level (warning, critical).", m.warnings),
                _counter("tokens", "Model tokens used by tasks, by direction (input, output).", m.tokens),
                *_spend_families(m),
                *_human_families(m),
            ]
            running = GaugeMetricFamily(PREFIX + "tasks_running", "Tasks currently open.", labels=["agent"])
            ratio = GaugeMetricFamily(
                PREFIX + "context_utilization_ratio",
                "Context-window occupancy (0-1) of the agent's worst currently open task; 0 "
                "when none is open or the window is unknown.",
                labels=["agent"],
            )
            oldest = GaugeMetricFamily(
                PREFIX + "oldest_task_start_timestamp_seconds",
                "Start time (unix seconds) of the agent's oldest open task; absent when none.",
                labels=["agent"],
            )
            stalest = GaugeMetricFamily(
                PREFIX + "stalest_task_activity_timestamp_seconds",
                "Time (unix seconds) of the last activity (start, checkpoint, context warning or "
                "artifact) of the agent's open task that has been silent longest; absent when none.",
                labels=["agent"],
            )
            for agent, g in sorted(m.agent_gauges().items()):
                running.add_metric([agent], g.running)
                ratio.add_metric([agent], g.worst_ratio)
                if g.oldest_start_s is not None:
                    oldest.add_metric([agent], g.oldest_start_s)
                if g.stalest_activity_s is not None:
                    stalest.add_metric([agent], g.stalest_activity_s)
            last = GaugeMetricFamily(
                PREFIX + "last_checkpoint_timestamp_seconds",
                "Time (unix seconds) of the agent's latest task start, checkpoint or model call, over all "
                "its tasks (kept for compatibility; stalls use stalest_task_activity_timestamp_seconds).",
                labels=["agent"],
            )
            for agent, ts in sorted(m.last_progress_s.items()):
                last.add_metric([agent], ts)
            overflow = CounterMetricFamily(
                PREFIX + "label_overflow",
                "Label values beyond the configured cap, reported as 'other' instead.",
                labels=["label"],
            )
            for label, n in m.overflow.items():
                overflow.add_metric([label], n)
        yield from fams
        yield from (running, ratio, oldest, stalest, last, overflow)


def _spend_families(m: TaskMetrics) -> list[Metric]:
    s = m.spend
    used = GaugeMetricFamily(
        PREFIX + "budget_used_ratio",
        "Share of a budget used now, highest per scope: task (worst open task with a budget), agent_day, day, "
        "month (this process's totals, from the scope's first warning of the current UTC day or month); "
        "absent when no budget of the scope is known. May exceed 1.",
        labels=["scope"],
    )
    for scope, ratio in m.budget_ratios().items():
        used.add_metric([scope], ratio)
    return [
        _counter(
            "cost_usd",
            "Estimated cost of model calls in US dollars, by agent and model (the instrumentation's figure, an "
            "operator's price or genai-prices); unpriced calls are in spanvisor_unpriced_model_calls_total.",
            s.cost,
        ),
        _counter("unpriced_model_calls", "Model calls no price is known for, by agent.", s.unpriced),
        _counter(
            "budget_warnings",
            "Budget warnings by scope (task, agent_day, day, month) and level (warning below 100% of the "
            "budget, critical at or above).",
            s.budget_warnings,
        ),
        _counter(
            "context_forecasts",
            "Context forecasts: a task's conversation set to pass the next context level within a few calls.",
            s.forecasts,
        ),
        used,
    ]


def _human_families(m: TaskMetrics) -> list[Metric]:
    h = m.human
    fams: list[Metric] = [
        _counter(
            "interventions",
            "People's decisions on tasks, by action (approve, reject, cancel, retry, acknowledge) and outcome "
            "(applied, or denied: not an approver, a finished task, an approval already closed).",
            h.interventions,
        ),
        _counter(
            "break_glass",
            "Approvals that broke glass: one member of SPANVISOR_BREAK_GLASS_GROUP approving alone, with a reason.",
            h.break_glass,
        ),
        _counter(
            "budget_stops",
            "Tasks cancelled by their own budget: a budget set to stop (agent.budget.stop, SPANVISOR_BUDGET_STOP) "
            "reached, its cancel applied.",
            h.budget_stops,
        ),
    ]
    if h.result_names:
        last = GaugeMetricFamily(
            PREFIX + "task_result",
            "The value of a task result (agent.result.<name>, listed in SPANVISOR_PROMETHEUS_RESULTS) reported "
            "by the agent's last finished task that had it; booleans read 1 or 0.",
            labels=["agent", "name"],
        )
        for (agent, name), value in sorted(h.last_result.items()):
            last.add_metric([agent, name], value)
        fams.append(last)
        if any(h.result_names.values()):
            fams.append(
                _counter(
                    "task_result_sum",
                    "The sum of a task result (listed as NAME:sum in SPANVISOR_PROMETHEUS_RESULTS) over the "
                    "agent's finished tasks.",
                    h.result_sum,
                )
            )
    return fams


class PipelineCollector(Collector):
    """Exposes :class:`PipelineStats` as ``spanvisor_<key>`` for each key of ``METRICS``."""

    def __init__(self, stats: PipelineStats) -> None:
        self.stats = stats
        self._broken_gauges: set[str] = set()
        self._bad_names: set[str] = set()

    def collect(self) -> Iterable[Metric]:
        stats = self.stats
        stats.sync_inbox_drops()
        # dict() copies in one C call under the GIL: safe against the agent's
        # thread adding a key, without reaching for the stats' private lock.
        counters = dict(stats.counters)
        histograms = dict(stats.histograms)
        gauges = dict(stats.gauges)
        for key, kind, doc in self._table(counters, gauges, histograms):
            name = PREFIX + key
            if kind == "counter":
                yield self._counter(name, doc, key, counters)
            elif kind == "gauge":
                yield self._gauge(name, doc, key, gauges)
            elif kind == "histogram":
                yield self._histogram(name, doc, key, histograms)

    def _table(self, counters: dict, gauges: dict, histograms: dict) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
        """METRICS first; then whatever else sinks counted (e.g. the Slack sink's
        ``slack_calls_total``), so a plugin's own numbers are never invisible."""
        rows = [(key, kind, doc) for key, (kind, doc) in METRICS.items() if key not in TASK_METRIC_KEYS]
        extra: dict[str, str] = {}
        for source, kind in ((counters, "counter"), (gauges, "gauge"), (histograms, "histogram")):
            for name, _ in source:
                if name not in METRICS and name not in extra:
                    extra[name] = kind
        for name, kind in sorted(extra.items()):
            if _VALID_NAME.match(name) and (kind != "counter" or name.endswith("_total")):
                rows.append((name, kind, f"{name.replace('_', ' ')} (counted by a plugin)."))
            elif name not in self._bad_names:
                self._bad_names.add(name)
                log.error("stat %r is not a valid Prometheus %s name; it is not exposed", name, kind)
        return rows

    @staticmethod
    def _counter(name: str, doc: str, key: str, counters: dict) -> Metric:  # type: ignore[type-arg]
        fam = CounterMetricFamily(name, doc)
        base = fam.name + "_total"
        found = False
        for (n, labels), value in counters.items():
            if n == key:
                fam.add_sample(base, dict(labels), value)
                found = True
        if not found and key not in _LABELLED:
            fam.add_sample(base, {}, 0.0)
        return fam

    def _gauge(self, name: str, doc: str, key: str, gauges: dict) -> Metric:  # type: ignore[type-arg]
        fam = GaugeMetricFamily(name, doc)
        found = False
        for (n, labels), fn in gauges.items():
            if n != key:
                continue
            try:
                value = float(fn())
            except Exception as exc:  # a broken gauge must not break the scrape
                if name not in self._broken_gauges:
                    self._broken_gauges.add(name)
                    log.error("gauge %s could not be read: %r; it is left out of scrapes", name, exc)
                continue
            if math.isfinite(value):
                fam.add_sample(name, dict(labels), value)
                found = True
        if not found and key not in _LABELLED:
            fam.add_sample(name, {}, 0.0)
        return fam

    @staticmethod
    def _histogram(name: str, doc: str, key: str, histograms: dict) -> Metric:  # type: ignore[type-arg]
        fam = HistogramMetricFamily(name, doc)
        for (n, labels), h in histograms.items():
            if n != key:
                continue
            lab = dict(labels)
            counts, cumulative = list(h.counts), 0
            for bound, c in zip([*h.buckets, math.inf], counts, strict=True):
                cumulative += c
                fam.add_sample(name + "_bucket", {**lab, "le": _le(bound)}, cumulative)
            fam.add_sample(name + "_count", lab, cumulative)
            fam.add_sample(name + "_sum", lab, h.total)
        return fam


# Keys of METRICS that TaskCollector exposes, from events and with the agent
# label: left out here so each family appears once in a scrape.
TASK_METRIC_KEYS = frozenset({"model_calls_total"})

# Keys of METRICS that always carry labels: with no sample yet they are left
# empty rather than shown as an unlabelled 0 next to labelled series later.
_LABELLED = frozenset(
    {
        "spans_received_total",
        "events_emitted_total",
        "dropped_total",
        "sink_deliveries_total",
        "sink_latency_seconds",
        "queue_depth",
        "evicted_tasks_total",
        "live_records_total",
        "provisional_tasks_total",
        "outbox_events",
    }
)


class BuildInfoCollector(Collector):
    def __init__(self, version: str) -> None:
        self.version = version

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(PREFIX + "build_info", "spanvisor's version; always 1.", labels=["version"])
        fam.add_metric([self.version], 1)
        yield fam
