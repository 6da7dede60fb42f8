"""Parallel calls of one conversation that end out of order do not make its
occupancy fall and rise again (tracking/occupancy.py: the call that started
last is the latest), on the tracker in both orders and on every real path."""

from __future__ import annotations

import random

from spanvisor.events import ContextWarning, Event
from spanvisor.spans import conventions as cv
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream, final_states
from ._paths import exporter_run, processor_run, receiver_run, unstamped_spans
from ._trees import FakeClock, SpanSpec, feed_end_order, feed_start_order, stamp_trees

MS = 1_000_000
TRACE = f"{7:032x}"


def _call(n: int, start_ms: int, end_ms: int, prompt: int) -> SpanSpec:
    s = SpanSpec(TRACE, f"{n + 1:016x}", f"{1:016x}", f"chat {n}", start_ms * MS, end_ms * MS)
    s.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}  # a 128,000-token window
    s.updates = [(end_ms * MS, {cv.GEN_AI_INPUT: prompt, cv.GEN_AI_OUTPUT: 0})]
    return s


def _specs() -> list[SpanSpec]:
    """A streams a 60k prompt from 10 ms to 50 ms; B, started after it with
    95k, ends first (30 ms); C follows with 115k. By end, occupancy would go
    95k -> 60k -> 115k: 74 %, 47 %, 90 %."""
    root = SpanSpec(TRACE, f"{1:016x}", None, "run", 0, 100 * MS)
    root.start_attrs = {cv.TASK_NAME: "parallel", cv.AGENT_ID: "rivet"}
    return [root, _call(1, 10, 50, 60_000), _call(2, 20, 30, 95_000), _call(3, 60, 70, 115_000)]


def _warnings(events: list[Event]) -> list[float]:
    return [e.threshold for e in events if isinstance(e, ContextWarning)]


def test_the_70_percent_warning_fires_once_during_one_rise_in_both_orders() -> None:
    specs = _specs()
    stamp_trees(specs)
    runs = {
        "start order": feed_start_order(TaskTracker(), specs),
        "end order": feed_end_order(TaskTracker(clock=FakeClock()), specs, random.Random(1), stamped=False),
        "end order stamped": feed_end_order(TaskTracker(clock=FakeClock()), specs, random.Random(2), stamped=True),
    }
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        assert _warnings(events) == [0.70, 0.85], (name, _warnings(events))
        shown = [e.task.context_tokens or 0 for e in events if e.kind == "Checkpoint"]
        assert shown == sorted(shown), (name, "the older parallel call lowered the figure", shown)


def test_the_70_percent_warning_fires_once_on_every_path() -> None:
    specs = _specs()
    in_process, stamped = processor_run(specs)
    runs = {
        "processor": in_process,
        "exporter": exporter_run(unstamped_spans(specs)),
        "receiver stamped": receiver_run(stamped, random.Random(3)),
    }
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        assert _warnings(events) == [0.70, 0.85], (name, _warnings(events))
        assert final_states(events) == final_states(in_process), name
