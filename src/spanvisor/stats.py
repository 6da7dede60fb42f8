"""The pipeline's self-metrics, as plain numbers.

The core imports no metrics library: it counts here, and the Prometheus sink
exposes these values through a custom collector. Counters only go up;
gauges are read through callables when scraped; histograms keep fixed
buckets. Counters are kept per thread (no lock on the hot path, see
:class:`PipelineStats`); a short lock guards each histogram update, so the
agent's thread may count too (inbox drops) without ever waiting on I/O.
"""

from __future__ import annotations

import logging
import threading
from _thread import get_ident
from collections.abc import Callable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

# name -> (type, help). The Prometheus sink prefixes ``spanvisor_``.
METRICS: dict[str, tuple[str, str]] = {
    "spans_received_total": (
        "counter",
        "Spans handed to spanvisor, by path (exporter, receiver: every span; processor: the spans of tasks).",
    ),
    "spans_in_tasks_total": ("counter", "Spans that belonged to a task and were tracked."),
    "log_records_total": (
        "counter",
        "OpenTelemetry log records seen for log tails, by outcome (attached to a task's tail, no_task).",
    ),
    "log_tail_traces": ("gauge", "Traces whose log records are kept for a tail (open tasks and pending ones)."),
    "events_emitted_total": ("counter", "Domain events emitted by the tracker, by kind."),
    "dropped_total": (
        "counter",
        "Spans or events dropped, by reason and sink. Every drop is also logged once.",
    ),
    "sink_deliveries_total": (
        "counter",
        "Export calls to sinks, by sink and outcome (success, retry, failure).",
    ),
    "sink_latency_seconds": ("histogram", "Time a sink's export call took, by sink."),
    "queue_depth": ("gauge", "Events waiting in a sink's queue, by sink."),
    "inbox_depth": ("gauge", "Entries waiting for the tracker (a span start or end, or one receiver batch)."),
    "open_tasks": ("gauge", "Tasks the tracker has open."),
    "evicted_tasks_total": (
        "counter",
        "Tasks evicted from the tracker, by reason (finished, capacity, expired, expired_plain: a trace waiting for "
        "its root that showed nothing of an agent, partial, finished_by_another_replica: a task only live records "
        "told of here, lost). A capacity eviction "
        "finishes the task as evicted (start-only tasks first, then tasks heard of once that showed no more than one "
        "call, then the silent past their stall time, then by what each showed; passing over those waiting for a person).",
    ),
    "live_records_total": (
        "counter",
        "Live-channel log records (agent.task.start, agent.checkpoint, heartbeats ...) read by the tracker, by outcome (opened, read, late, waiting: for its task's start, refused: a start at capacity).",
    ),
    "outbox_events": ("gauge", "Events waiting in a durable outbox, by sink."),
    "provisional_tasks_total": (
        "counter",
        "Traces whose task opened before its root arrived, by outcome: shown (a provisional task opened), held_back "
        "(model calls of a trace that did not look like an agent run and made no task: shown nowhere), renamed (a shown "
        "task whose root then named its agent.task.id: it took that id).",
    ),
    "late_spans_total": (
        "counter",
        "Spans that ended after their task had finished (read as TaskCorrected within the late window, every path).",
    ),
    "late_span_arrival_seconds": (
        "histogram",
        "How long after its task finished a late span arrived, by kind: arrived_late (it ended before its root: its facts are kept) or outlived (it ended after the root).",
    ),
    "span_attributes_dropped_total": (
        "counter",
        "Attributes the sender's attribute limit dropped from spans spanvisor read (a task's identity is kept; noted on the task).",
    ),
    "span_times_clamped_total": (
        "counter",
        "Spans whose start or end time was out of range and clamped on the way in (the reason is in the events' notes).",
    ),
    "sink_dead_letters_total": (
        "counter",
        "Events a sink failed on repeatedly, set aside in its dead-letter store, by sink.",
    ),
    "processor_errors_total": (
        "counter",
        "Exceptions caught in the in-process span processor's hooks (never raised into the agent).",
    ),
    "slack_calls_total": ("counter", "Slack Web API calls made, by method."),
    "slack_errors_total": ("counter", "Slack Web API errors, by error code and method."),
    "slack_open_tasks": ("gauge", "Tasks the Slack sink is still delivering."),
    "receiver_requests_total": ("counter", "OTLP export requests, by transport (http, grpc) and outcome."),
    "receiver_spans_rejected_total": ("counter", "Spans rejected as invalid (reported in partial_success)."),
    "receiver_journal_bytes": ("gauge", "Size of the receiver's durable span journal."),
    "control_runs_waiting": ("gauge", "Runs whose facts wait to be written to the control log (state store)."),
    "coding_agent_records_total": (
        "counter",
        "Log records of coding-agent CLIs (those whose adapter reads their telemetry) read as tasks, by outcome (read, or why not: no_session_id, unreadable_attributes, ...).",
    ),
    "coding_agent_spans_ignored_total": (
        "counter",
        "Spans coding-agent CLIs sent themselves, set aside: their sessions are read from their log records.",
    ),
    "duplicate_spans_total": (
        "counter",
        "Span ends seen again within the dedup window and not counted twice.",
    ),
    "claimed_ends_total": (
        "counter",
        "Root ends of tasks spanvisor run started that came without its launcher's proof: claims, said on the "
        "task, which stays open.",
    ),
}

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Histograms whose values are not latencies: their own bounded buckets.
BUCKETS: dict[str, tuple[float, ...]] = {"late_span_arrival_seconds": (1.0, 10.0, 60.0, 600.0)}


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.count += 1


def _labels(labels: dict[str, str]) -> Labels:
    # Counted per span on hot paths: skip the sort when there is nothing to sort.
    if len(labels) < 2:
        return tuple(labels.items())
    return tuple(sorted(labels.items()))


class PipelineStats:
    """Counters are kept per thread and summed when read.

    ``inc`` runs for every span and every event (about 1 µs with a lock).
    Each thread adds into a dict only it writes, so no update is lost without
    a lock: under the GIL a dict's ``get`` and store are each atomic, and
    only the owner does the read-modify-write. A reader copies each thread's
    dict (a C-level copy, atomic under the GIL) and adds them up, so it sees
    every increment completed before it began. A thread's dict outlives it
    (its counts stay); a new thread with a reused thread id writes into the
    same dict, which its predecessor no longer touches.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # thread id -> that thread's counters (written by it alone)
        self._shards: dict[int, dict[tuple[str, Labels], float]] = {}
        self.histograms: dict[tuple[str, Labels], Histogram] = {}
        self.gauges: dict[tuple[str, Labels], Callable[[], float]] = {}
        self._inbox_pending = 0
        self._logged: set[tuple[str, Labels]] = set()
        self.log = logging.getLogger("spanvisor.pipeline")

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, (tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))) if labels else ())
        shard = self._shards.get(get_ident())
        if shard is None:
            shard = self._shard()
        shard[key] = shard.get(key, 0) + value

    def _shard(self) -> dict[tuple[str, Labels], float]:
        with self._lock:  # a thread's first count: one new dict, never two
            return self._shards.setdefault(get_ident(), {})

    @property
    def counters(self) -> dict[tuple[str, Labels], float]:
        """Every counter's value now: a new dict, the sum over threads."""
        total: dict[tuple[str, Labels], float] = {}
        for shard in list(self._shards.values()):
            for key, value in shard.copy().items():
                total[key] = total.get(key, 0) + value
        return total

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = (name, _labels(labels))
        with self._lock:
            h = self.histograms.get(key)
            if h is None:
                b = BUCKETS.get(name, LATENCY_BUCKETS)
                h = self.histograms[key] = Histogram(b, [0] * (len(b) + 1))
            h.observe(value)

    def gauge(self, name: str, fn: Callable[[], float], **labels: str) -> None:
        self.gauges[(name, _labels(labels))] = fn

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 when never set)."""
        key = (name, _labels(labels))
        if name == "dropped_total" and labels == {"reason": "inbox_full", "sink": ""}:
            self.sync_inbox_drops()
        if key in self.gauges:
            return float(self.gauges[key]())
        return sum(shard.get(key, 0) for shard in list(self._shards.values()))

    def total(self, name: str) -> float:
        if name == "dropped_total":
            self.sync_inbox_drops()
        return sum(v for (n, _), v in self.counters.items() if n == name)

    def drop(self, reason: str, count: int = 1, sink: str = "", detail: str = "") -> None:
        """Count a drop, and log the first one of each kind loudly."""
        self.inc("dropped_total", count, reason=reason, sink=sink)
        key = ("dropped_total", _labels({"reason": reason, "sink": sink}))
        if key not in self._logged:
            self._logged.add(key)
            where = f" in sink {sink}" if sink else ""
            self.log.error(
                "dropping %s%s (%s); further drops of this kind are counted in "
                "spanvisor_dropped_total{reason=%r} and not logged again",
                reason.replace("_", " "),
                where,
                detail or "see docs/design/architecture.md#drops",
                reason,
            )

    def inbox_drop(self) -> None:
        """Called on the agent's thread: a counter bump, no logging, no I/O."""
        with self._lock:
            self._inbox_pending += 1

    def sync_inbox_drops(self) -> None:
        """Fold the agent-thread drops into the counters and log the first."""
        with self._lock:
            n, self._inbox_pending = self._inbox_pending, 0
        if n:
            self.drop(
                "inbox_full",
                n,
                detail="the tracker fell behind the agent; raise SPANVISOR_INBOX_SIZE",
            )
