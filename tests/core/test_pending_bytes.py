"""Spans waiting for their task root are bounded in bytes, and traces that
show nothing of an agent go first, and sooner (issue 64).

On the exporter and receiver paths an unstamped span waits in
``tracking.tracebuffer.PendingTraces`` until its ancestry is known. A flood
of plain traces (no model call, tool call or agent span) used to be kept
for an hour, bounded only by 200,000 spans evicted oldest first, so it
could push out a real agent trace's early spans. Here: real OpenTelemetry
SDK spans (read as the exporter reads them) through the ``TaskTracker``,
and a property over any flood on ``PendingTraces`` itself. No test waits:
every clock is a fake one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from spanvisor.config import Config
from spanvisor.events import Event, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, from_sdk
from spanvisor.stats import PipelineStats
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.tracebuffer import (
    DEFAULT_PENDING_BYTES,
    DEFAULT_PLAIN_TTL_S,
    LINK_BYTES,
    PENDING_TTL_S,
    TRACE_BYTES,
    PendingSettings,
    PendingTraces,
    shows_agent,
    span_bytes,
)
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock

SVC = {"service.name": "svc"}
DROPS = ("pending_plain_evicted", "pending_spans_evicted", "pending_bytes_evicted")


# -- real SDK spans ----------------------------------------------------------------


class Sdk:
    """A real TracerProvider whose ended spans are read as the exporter reads them."""

    def __init__(self) -> None:
        self.exported = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exported))
        self.tracer = self.provider.get_tracer("agent")

    def ended(self) -> list[SpanData]:
        """Spans ended since the last call, in end order, unstamped."""
        spans: tuple[ReadableSpan, ...] = self.exported.get_finished_spans()
        self.exported.clear()
        return [from_sdk(s, SVC) for s in spans]


def plain_trace(sdk: Sdk, i: int) -> list[SpanData]:
    """An HTTP request that looked something up and failed: no agent in it."""
    with sdk.tracer.start_as_current_span(f"GET /search/{i}", context=trace.set_span_in_context(trace.INVALID_SPAN)):
        with sdk.tracer.start_as_current_span("retrieve") as s:
            s.set_attribute(cv.OI_KIND, "RETRIEVER")
            s.set_attribute("db.statement", f"SELECT * FROM docs WHERE id = {i}")
            s.set_status(Status(StatusCode.ERROR, "not found"))
    return sdk.ended()


def agent_run(sdk: Sdk, name: str, tokens: int) -> tuple[list[SpanData], SpanData]:
    """An agent's run: its model call (ended, sent) and its root (ended later)."""
    root = sdk.tracer.start_span(
        f"invoke_agent {name}",
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        attributes={cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: name},
    )
    with sdk.tracer.start_as_current_span("chat gpt-4o", context=trace.set_span_in_context(root)) as c:
        c.set_attribute(cv.GEN_AI_OPERATION, "chat")
        c.set_attribute(cv.GEN_AI_REQUEST_MODEL, "gpt-4o")
        c.set_attribute(cv.GEN_AI_INPUT, tokens)
        c.set_attribute(cv.GEN_AI_OUTPUT, 10)
    calls = sdk.ended()
    root.end()
    (ended_root,) = sdk.ended()
    return calls, ended_root


def tracker_with(limits: PendingSettings, clock: FakeClock, max_spans: int = 200_000) -> TaskTracker:
    tracker = TaskTracker(TrackerSettings(pending=limits), clock=clock, max_pending_spans=max_spans)
    if tracker._pending.limits != limits:
        # Until trackerbase passes settings.pending to PendingTraces (see
        # test_the_tracker_takes_its_bounds_from_its_settings), the buffer with these bounds.
        tracker._pending = PendingTraces(30.0, max_spans, tracker.stats, clock, limits)
    return tracker


def feed(tracker: TaskTracker, spans: list[SpanData]) -> list[Event]:
    """One delivery, settled as the pipeline settles it."""
    return [e for s in spans for e in tracker.span_ended(s)] + tracker.settle()


def drops(stats: PipelineStats, reason: str) -> float:
    return stats.value("dropped_total", reason=reason, sink="")


# -- the bound, the order, the expiry -----------------------------------------------------


def test_a_flood_of_plain_traces_stays_under_the_byte_bound_and_never_evicts_an_agent_trace() -> None:
    sdk, clock = Sdk(), FakeClock()
    one_plain = sum(span_bytes(s) for s in plain_trace(sdk, -1)) + TRACE_BYTES
    limits = PendingSettings(max_bytes=50 * one_plain)
    tracker = tracker_with(limits, clock)
    calls, root = agent_run(sdk, "planner", 1_234)
    assert feed(tracker, calls) == []  # waits for its root (one model call: no provisional task)
    pending = tracker._pending
    for i in range(2_000):
        clock.advance(0.01)
        assert feed(tracker, plain_trace(sdk, i)) == []
        assert pending.held_bytes <= limits.max_bytes
    # The agent trace, the oldest of all, is still there; the plain ones went.
    agent_buf = pending.buffer(root.trace_id)
    assert agent_buf is not None and shows_agent(agent_buf)
    plain_left = pending.spans - len(agent_buf.spans)
    assert plain_left // 2 < 50 and drops(tracker.stats, "pending_plain_evicted") == 2 * 2_000 - plain_left
    assert drops(tracker.stats, "pending_spans_evicted") == drops(tracker.stats, "pending_bytes_evicted") == 0
    # Its root arrives: the task has its model call's tokens.
    events = feed(tracker, [root])
    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert [(e.task.agent_id, e.task.input_tokens) for e in finished] == [("planner", 1_234)]


def test_a_provisional_task_outlives_a_flood_of_plain_traces() -> None:
    sdk, clock = Sdk(), FakeClock()
    limits = PendingSettings(max_bytes=40_000)
    tracker = tracker_with(limits, clock)
    root = sdk.tracer.start_span(
        "invoke_agent worker",
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        attributes={cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "worker"},
    )
    ctx = trace.set_span_in_context(root)
    for tokens in (100, 200):  # two model calls: a provisional task opens (calls=2)
        with sdk.tracer.start_as_current_span("chat gpt-4o", context=ctx) as c:
            c.set_attributes({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o", cv.GEN_AI_INPUT: tokens})
    shown = feed(tracker, sdk.ended())
    assert any(isinstance(e, TaskStarted) and e.task.provisional for e in shown)
    for i in range(500):
        feed(tracker, plain_trace(sdk, i))
        assert tracker._pending.held_bytes <= limits.max_bytes
    with sdk.tracer.start_as_current_span("chat gpt-4o", context=ctx) as c:
        c.set_attributes({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o", cv.GEN_AI_INPUT: 300})
    root.end()
    events = feed(tracker, sdk.ended())
    finished = [e for e in events if isinstance(e, TaskFinished)]
    assert [(e.task.agent_id, e.task.input_tokens) for e in finished] == [("worker", 600)]
    assert drops(tracker.stats, "pending_plain_evicted") > 0
    assert drops(tracker.stats, "pending_spans_evicted") == drops(tracker.stats, "pending_bytes_evicted") == 0


def test_agent_traces_alone_go_oldest_first_counted_as_over_the_byte_bound() -> None:
    sdk, clock = Sdk(), FakeClock()
    runs = [agent_run(sdk, f"agent{i}", 100 + i) for i in range(12)]
    per_trace = sum(span_bytes(s) for s in runs[0][0]) + TRACE_BYTES
    tracker = tracker_with(PendingSettings(max_bytes=per_trace * 10), clock)
    for calls, _ in runs:
        clock.advance(1.0)
        feed(tracker, calls)
    assert drops(tracker.stats, "pending_bytes_evicted") == 2  # one model call each, the two oldest
    assert drops(tracker.stats, "pending_plain_evicted") == 0
    kept = [i for i, (calls, _) in enumerate(runs) if tracker._pending.waiting(calls[0].trace_id)]
    assert kept == list(range(2, 12))


def test_the_span_bound_evicts_plain_traces_first_too() -> None:
    sdk, clock = Sdk(), FakeClock()
    tracker = tracker_with(PendingSettings(), clock, max_spans=10)
    calls, root = agent_run(sdk, "planner", 50)
    feed(tracker, calls)
    for i in range(20):
        feed(tracker, plain_trace(sdk, i))
    assert tracker._pending.waiting(root.trace_id)
    assert drops(tracker.stats, "pending_plain_evicted") == 2 * 20 - (tracker._pending.spans - 1)
    assert drops(tracker.stats, "pending_spans_evicted") == 0


def test_plain_traces_are_forgotten_after_minutes_agent_traces_after_an_hour() -> None:
    sdk, clock = Sdk(), FakeClock()
    tracker = tracker_with(PendingSettings(plain_ttl_s=300.0), clock)
    calls, root = agent_run(sdk, "planner", 50)
    feed(tracker, calls)
    old = plain_trace(sdk, 1)
    feed(tracker, old)
    clock.advance(200.0)
    fresh = plain_trace(sdk, 2)
    feed(tracker, fresh)
    clock.advance(101.0)  # the first plain trace is 301 s old, the second 101 s
    assert tracker.expire() == []
    pending = tracker._pending
    assert not pending.waiting(old[0].trace_id) and pending.waiting(fresh[0].trace_id)
    assert tracker.stats.value("evicted_tasks_total", reason="expired_plain") == 1
    clock.advance(200.0)
    tracker.expire()
    assert not pending.waiting(fresh[0].trace_id) and pending.waiting(root.trace_id)
    assert tracker.stats.value("evicted_tasks_total", reason="expired_plain") == 2
    assert tracker.stats.value("evicted_tasks_total", reason="expired") == 0
    clock.advance(PENDING_TTL_S)
    tracker.expire()
    assert not pending.waiting(root.trace_id) and pending.spans == 0 and pending.held_bytes == 0
    assert tracker.stats.value("evicted_tasks_total", reason="expired") == 1
    assert tracker.stats.value("evicted_tasks_total", reason="expired_plain") == 2


def test_a_plain_trace_that_shows_an_agent_later_is_kept_as_an_agent_trace() -> None:
    sdk, clock = Sdk(), FakeClock()
    tracker = tracker_with(PendingSettings(plain_ttl_s=300.0), clock)
    root = sdk.tracer.start_span("invoke_agent late", context=trace.set_span_in_context(trace.INVALID_SPAN))
    ctx = trace.set_span_in_context(root)
    with sdk.tracer.start_as_current_span("retrieve", context=ctx) as s:
        s.set_attribute(cv.OI_KIND, "RETRIEVER")
    feed(tracker, sdk.ended())
    clock.advance(100.0)
    with sdk.tracer.start_as_current_span("chat gpt-4o", context=ctx) as c:
        c.set_attributes({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 10})
    feed(tracker, sdk.ended())
    clock.advance(DEFAULT_PLAIN_TTL_S + 1)
    tracker.expire()
    assert tracker._pending.waiting(format(root.get_span_context().trace_id, "032x"))


def test_the_estimate_grows_with_what_a_span_carries() -> None:
    base = SpanData("a" * 32, "b" * 16, None, "x", 1, 2, {})
    assert span_bytes(None) == LINK_BYTES < span_bytes(base)
    bigger = SpanData("a" * 32, "b" * 16, None, "x", 1, 2, {"input.value": "y" * 10_000, "tags": ("a", "bb")})
    assert span_bytes(bigger) >= span_bytes(base) + 10_000 + 3


# -- settings ------------------------------------------------------------------------


def test_the_bounds_are_settings_with_sane_defaults() -> None:
    defaults = TrackerSettings.from_config(Config.load(env={}, extra=()))
    assert defaults.pending == PendingSettings(DEFAULT_PENDING_BYTES, DEFAULT_PLAIN_TTL_S)
    assert (DEFAULT_PENDING_BYTES, DEFAULT_PLAIN_TTL_S) == (64 * 1024**2, 300.0)
    set_ = Config.load(env={"SPANVISOR_PENDING_BYTES": "8MiB", "SPANVISOR_PENDING_PLAIN_TTL": "2m"}, extra=())
    assert TrackerSettings.from_config(set_).pending == PendingSettings(8 * 1024**2, 120.0)


def test_the_tracker_takes_its_bounds_from_its_settings() -> None:
    limits = PendingSettings(max_bytes=1_000_000, plain_ttl_s=60.0)
    assert TaskTracker(TrackerSettings(pending=limits))._pending.limits == limits


# -- the property ---------------------------------------------------------------------

KINDS = ("link", "plain", "call", "tool", "agent", "big")


@st.composite
def floods(draw: Any) -> list[tuple[str, int, str, float]]:
    """(what, trace, kind, seconds to advance): spans of up to 12 traces, and expiries."""
    n = draw(st.integers(1, 120))
    return [
        (
            draw(st.sampled_from(("hold", "hold", "hold", "expire"))),
            draw(st.integers(0, 11)),
            draw(st.sampled_from(KINDS)),
            draw(st.sampled_from((0.0, 1.0, 40.0, 400.0, 4_000.0))),
        )
        for _ in range(n)
    ]


class Recorder(PipelineStats):
    """Every drop call, as made."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def drop(self, reason: str, count: int = 1, sink: str = "", detail: str = "") -> None:
        self.calls.append((reason, count))
        super().drop(reason, count, sink, detail)


def _span(trace_no: int, kind: str, seq: Iterator[int]) -> tuple[SpanData, bool, bool]:
    """A span of trace ``trace_no`` (parent never arrives, so nothing is
    decided): (span, interesting, candidate)."""
    tid, sid = f"{trace_no + 1:032x}", f"{next(seq):016x}"
    attrs: dict[str, Any] = {
        "link": {},
        "plain": {cv.OI_KIND: "RETRIEVER"},
        "call": {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 10},
        "tool": {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "t"},
        "agent": {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "a"},
        "big": {cv.OI_KIND: "RETRIEVER", "input.value": "x" * 3_000},
    }[kind]
    span = SpanData(tid, sid, "f" * 16, kind, 1, 2, attrs)
    return span, kind != "link", kind == "agent"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flood=floods(), max_bytes=st.integers(2_000, 40_000), max_spans=st.integers(2, 40))
def test_any_flood_stays_bounded_evicts_plain_first_and_counts_each_eviction_once(
    flood: list[tuple[str, int, str, float]], max_bytes: int, max_spans: int
) -> None:
    clock, stats, seq = FakeClock(), Recorder(), itertools.count(1)
    pending = PendingTraces(30.0, max_spans, stats, clock, PendingSettings(max_bytes=max_bytes, plain_ttl_s=300.0))
    entered = taken = expired_spans = 0
    touched: dict[str, int] = {}  # trace -> when it was last held (op number)
    for n, (what, trace_no, kind, advance) in enumerate(flood):
        clock.advance(advance)
        before = {tid: len(b.spans) for tid, b in pending._buffers.items()}
        plain_before = {tid for tid, b in pending._buffers.items() if not shows_agent(b)}
        drops_before, expired_before = len(stats.calls), stats.total("evicted_tasks_total")
        if what == "hold":
            span, interesting, candidate = _span(trace_no, kind, seq)
            entered += 1
            before[span.trace_id] = before.get(span.trace_id, 0) + 1  # a new span id: one more
            subs = pending.hold(span, interesting, candidate)
            touched[span.trace_id] = n
        else:
            subs = pending.expire(clock())
        buffers = pending._buffers
        taken_from: dict[str, int] = {}
        for sub in subs:
            taken_from[sub.trace_id] = taken_from.get(sub.trace_id, 0) + sub.taken
        taken += sum(taken_from.values())
        lost = {t: k - (len(buffers[t].spans) if t in buffers else 0) - taken_from.get(t, 0) for t, k in before.items()}
        gone = [t for t, k in lost.items() if k > 0]
        new_drops = stats.calls[drops_before:]
        expired = stats.total("evicted_tasks_total") - expired_before
        # Held bytes never exceed the bound, and are what the buffers say they are.
        assert pending.held_bytes <= max_bytes and pending.spans <= max_spans
        assert pending.held_bytes == sum(b.size + TRACE_BYTES for b in buffers.values())
        assert pending.spans == sum(len(b.spans) for b in buffers.values())
        assert all(b.size == sum(p.size for p in b.spans.values()) for b in buffers.values())
        # A trace loses spans only whole, and is counted once, by one call for all of them.
        assert all(t not in buffers for t in gone)
        if what == "hold":
            assert expired == 0 and sorted(c for _, c in new_drops) == sorted(lost[t] for t in gone)
            if any(r != "pending_plain_evicted" for r, _ in new_drops):  # an agent trace went: no plain one is left
                assert all(shows_agent(b) for b in buffers.values())
            evicted_plain = [t for t in gone if t in plain_before]
            kept_plain = [t for t in buffers if t in plain_before and t != span.trace_id]
            if evicted_plain and kept_plain:  # plain ones oldest first
                assert max(touched[t] for t in evicted_plain) < min(touched[t] for t in kept_plain)
        else:
            assert new_drops == [] and expired == len(gone)
            expired_spans += sum(lost[t] for t in gone)
        # Every span that entered is held, taken as a task's, dropped or expired: each once.
        assert entered == pending.spans + taken + sum(c for _, c in stats.calls) + expired_spans
