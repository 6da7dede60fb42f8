"""Clock skew between services does not change what an event says.

A sub-agent on a service whose clock is 3 s behind: its model call ends,
in true time, after the main agent's, but its end time says 3 s earlier.
Every path applies a task's spans in the order they ended as delivered
(docs/reference/conventions.md#clock-skew), never by end times from different clocks,
so each event id carries one content: the same time, occupancy and totals.
"""

from __future__ import annotations

import random

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream, final_states
from ._paths import exporter_run, processor_run, receiver_run, unstamped_spans
from ._trees import FakeClock, SpanSpec, feed_end_order, feed_start_order, stamp_trees

MS = 1_000_000
S = 1_000_000_000
BEHIND = -3 * S
TRACE = f"{5:032x}"
BASE = 10 * S


def _call(n: int, parent: str, start_ms: int, end_ms: int, tokens: int, clock_ns: int = 0) -> SpanSpec:
    start, end = BASE + start_ms * MS + clock_ns, BASE + end_ms * MS + clock_ns
    s = SpanSpec(TRACE, f"{n:016x}", parent, f"chat {n}", start, end, clock_ns=clock_ns)
    s.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
    s.updates = [(end, {cv.GEN_AI_INPUT: tokens - 50, cv.GEN_AI_OUTPUT: 50})]
    return s


def _specs() -> list[SpanSpec]:
    root = SpanSpec(TRACE, f"{1:016x}", None, "run", BASE, BASE + 100 * MS)
    root.start_attrs = {cv.TASK_NAME: "skewed", cv.AGENT_ID: "rivet"}
    root.events = []
    main = _call(2, root.span_id, 10, 50, 60_050)
    # The sub-agent's service: true 20..90 ms, its clock 3 s behind.
    sub = SpanSpec(
        TRACE, f"{3:016x}", root.span_id, "sub-agent", BASE + 20 * MS + BEHIND, BASE + 90 * MS + BEHIND, clock_ns=BEHIND
    )
    sub.start_attrs = {"rpc.service": "helper"}
    side = _call(4, sub.span_id, 30, 55, 8_020, clock_ns=BEHIND)  # ends after `main`, says 3 s before
    return [root, main, sub, side]


def _by_id(events: list[Event]) -> dict[str, Event]:
    return {e.event_id: e for e in events}


def _said(e: Event) -> tuple[object, ...]:
    """What skew could change: the time, the totals, the occupancy, the order."""
    v = e.task
    return (e.time_ns, v.seq, v.input_tokens, v.output_tokens, v.context_tokens, v.cost_usd, v.updated_ns)


def _same_contents(runs: dict[str, list[Event]], reference: str) -> None:
    """Every event id says the same on every run: whole, on the unstamped runs;
    what skew could change, on the stamped end-order runs (which open a task
    from its first stamped descendant, before its root names it) and for the
    events of a task shown before its root arrived (a provisional task, whose
    root names it last: docs/reference/conventions.md#provisional-tasks)."""
    want = _by_id(runs[reference])
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        got = _by_id(events)
        assert got.keys() == want.keys(), name
        for event_id, e in got.items():
            if "stamped" in name.split() or e.task.provisional:
                if e.kind != "TaskStarted":
                    assert _said(e) == _said(want[event_id]), (name, e.kind, _said(e), _said(want[event_id]))
            else:
                assert e == want[event_id], (name, e.kind, _said(e), _said(want[event_id]))
        assert final_states(events) == final_states(runs[reference]), name


def test_a_skewed_sub_agent_gives_each_event_one_content_on_the_tracker() -> None:
    specs = _specs()
    stamp_trees(specs)
    clock = FakeClock()
    runs = {
        "start order": feed_start_order(TaskTracker(), specs),
        "end order": feed_end_order(TaskTracker(clock=clock), specs, None, stamped=False, clock=clock),
        "end order stamped": feed_end_order(TaskTracker(clock=FakeClock()), specs, None, stamped=True),
    }
    _same_contents(runs, "start order")


def test_a_skewed_sub_agent_gives_each_event_one_content_on_every_path() -> None:
    specs = _specs()
    in_process, stamped = processor_run(specs)
    unstamped = unstamped_spans(specs)
    runs = {
        "processor": in_process,
        "exporter stamped": exporter_run(stamped),
        "exporter unstamped": exporter_run(unstamped),
        "receiver stamped": receiver_run(stamped, random.Random(1)),
        "receiver unstamped": receiver_run(unstamped, random.Random(2)),
    }
    _same_contents(runs, "processor")
