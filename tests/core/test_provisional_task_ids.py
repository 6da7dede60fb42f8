"""A trace that says its task's id never shows under a derived one.

When a trace's spans or live records name its task's ``agent.task.id`` (a
stamped span, the task helper's stamped start span, a live start record, an
agent span carrying the id held for its ancestry) by the time its model and
tool calls would open a provisional task, every event of it carries that id,
never ``<trace>-<span>`` (docs/reference/conventions.md#provisional-tasks): the
helper's approvals and cancels are addressed to that id. Property on the
pure TaskTracker (the end order of the exporter and the receiver, each batch
settled as the pipeline settles it); the real exporter path is the example
below, the receiver's ``tests/receiver/test_provisional_task_ids.py``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from spanvisor.agent import task
from spanvisor.events import Event
from spanvisor.otel import live
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
from spanvisor.testing import InMemorySink
from spanvisor.tracking.tracker import TaskTracker

from ._sdk import _config
from ._trees import FakeClock

TRACE = "ab" * 16
ROOT = "00000000000000aa"
TOP = "00000000000000ff"
TASK_ID = "fix-build-42"
SVC = {"service.name": "fixer"}
SOURCES = ("stamp", "start_span", "live_start", "held_root")


def _span(sid: int, parent: str, attrs: dict[str, Any], start: int) -> SpanData:
    return SpanData(TRACE, f"{sid:016x}", parent, "s", start, start + 10, attrs, resource=SVC)


def _work(kinds: list[str], steps: list[bool]) -> list[SpanData]:
    """Model and tool calls under the root, some under a plain step span
    (which ends after them)."""
    out: list[SpanData] = []
    n = 1
    for i, (kind, stepped) in enumerate(zip(kinds, steps, strict=True)):
        parent = ROOT
        if stepped:
            step = n
            n += 1
            parent = f"{step:016x}"
        attrs = (
            {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o", cv.GEN_AI_INPUT: 100, cv.GEN_AI_OUTPUT: 5}
            if kind == "chat"
            else {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "run"}
        )
        out.append(_span(n, parent, attrs, 2_000 + 100 * i))
        n += 1
        if stepped:
            out.append(_span(step, ROOT, {}, 1_990 + 100 * i))
    return out


def _root(parent: str | None) -> SpanData:
    attrs = {cv.TASK_NAME: "Fix the build", cv.TASK_ID: TASK_ID, cv.AGENT_ID: "fixer"}
    return SpanData(TRACE, ROOT, parent, "agent.task Fix the build", 1_000, 90_000, attrs, resource=SVC)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from(SOURCES),
    kinds=st.lists(st.sampled_from(["chat", "tool"]), min_size=2, max_size=8),
    data=st.data(),
    seed=st.integers(0, 2**32),
)
def test_a_trace_that_names_its_task_id_never_shows_under_a_derived_one(
    source: str, kinds: list[str], data: st.DataObject, seed: int
) -> None:
    rng = random.Random(seed)
    steps = data.draw(st.lists(st.booleans(), min_size=len(kinds), max_size=len(kinds)))
    work = _work(kinds, steps)
    rng.shuffle(work)  # end order from other clocks and batches: any order
    stamp = {cv.TASK_ROOT: ROOT, cv.TASK_ID: TASK_ID, cv.AGENT_ID: "fixer"}
    first: list[SpanData] = []
    facts: list[LiveFact] = []
    root = _root(TOP if source == "held_root" else None)
    if source == "stamp":  # a stamped span of no event of its own, anywhere in the first batch
        first.append(SpanData(TRACE, "00000000000000e1", ROOT, "db", 1_500, 1_600, stamp, resource=SVC))
    elif source == "start_span":  # the helper's: it ends as the task starts, first
        named = {**stamp, cv.TASK_NAME: "Fix the build"}
        first.append(SpanData(TRACE, "00000000000000e2", ROOT, cv.LIVE_TASK_START, 1_000, 1_000, named, resource=SVC))
    elif source == "live_start":
        facts.append(LiveFact(TRACE, ROOT, cv.LIVE_TASK_START, 1_000, dict(root.attributes), SVC))
    else:  # the root arrived, its parent not yet: held for its ancestry, with its id
        first.append(root)
    cut = rng.randint(1, len(work))
    batch0 = work[:cut]
    at = rng.randint(0, len(batch0)) if source == "stamp" else 0
    batches = [batch0[:at] + first + batch0[at:]]
    rest = work[cut:]
    while rest:
        k = rng.randint(1, len(rest))
        batches.append(rest[:k])
        rest = rest[k:]
    tail = [root] if source != "held_root" else []
    batches.append([*tail, SpanData(TRACE, TOP, None, "GET /fix", 500, 95_000, {}, resource=SVC)])

    tracker = TaskTracker(clock=FakeClock())
    events: list[Event] = list(tracker.live(facts))
    for batch in batches:
        for span in batch:
            events += tracker.span_ended(span)
        events += tracker.settle()
    ids = {e.task_id for e in events}
    assert ids == {TASK_ID}, (source, ids)
    assert tracker.stats.value("provisional_tasks_total", outcome="shown") == 0


def test_the_exporter_path_shows_a_helper_task_under_its_id_when_its_calls_end_at_once() -> None:
    """Spans handed over as they end (a SimpleSpanProcessor), the first model
    and tool calls right after the task starts: the start record is in the
    pipeline ahead of them, so no provisional task takes a derived id."""
    memory = InMemorySink()
    exporter = SpanvisorSpanExporter(sinks=[memory], config=_config())
    provider = TracerProvider(resource=Resource.create(SVC), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("agent")
    try:
        with task("Fix the build", agent_id="fixer", task_id=TASK_ID, tracer=tracer) as t:
            for _ in range(2):
                with tracer.start_as_current_span("execute_tool run") as s:
                    s.set_attributes({cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "run"})
                with tracer.start_as_current_span("chat gpt-4o") as s:
                    s.set_attributes({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"})
            t.checkpoint("built", progress=50)
            time.sleep(0.2)  # the pipeline reads them while the root is open
        assert exporter.force_flush(30_000)
    finally:
        provider.shutdown()
        channels = [c for c in live._channels.values() if c is not None]
        live._channels.clear()
        for ch in channels:  # the helper's channel: its thread ends with the test
            ch.close()
            ch._thread.join(5.0)
    assert memory.events
    assert {e.task_id for e in memory.events} == {TASK_ID}
