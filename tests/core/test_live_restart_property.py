"""A restart in the middle of the live channel changes nothing: a tracker
rebuilt from the records before it (what ``serve`` replays from its
journal) then fed the rest says exactly what one tracker fed everything
says after that point, with the same event ids, times and views; and a
record replayed twice (rebuilt, then replayed) is one fact."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import LiveFact
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock


def _fact(task: int, name: str, t: int, attrs: dict[str, Any]) -> LiveFact:
    return LiveFact(f"{task + 1:032x}", f"{task + 1:016x}", name, t, attrs, {cv.SERVICE_NAME: "svc"})


@st.composite
def runs(draw: st.DrawFn) -> list[LiveFact]:
    n = draw(st.integers(1, 3))
    out: list[LiveFact] = []
    t = 1_000
    for task in range(n):
        out.append(_fact(task, cv.LIVE_TASK_START, t, {cv.TASK_NAME: f"task {task}", cv.AGENT_ID: "a"}))
    for _ in range(draw(st.integers(0, 12))):
        t += draw(st.integers(0, 3)) * 1_000  # records at one instant too
        task = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(["update", "checkpoint", "heartbeat", "approval"]))
        if kind == "update":
            out.append(_fact(task, cv.LIVE_TASK_UPDATE, t, {cv.PROGRESS: float(draw(st.integers(0, 100)))}))
        elif kind == "checkpoint":
            out.append(_fact(task, cv.EVENT_CHECKPOINT, t, {cv.MESSAGE: draw(st.sampled_from(["a", "b"]))}))
        elif kind == "heartbeat":
            out.append(_fact(task, cv.LIVE_HEARTBEAT, t, {}))
        else:
            ask = {cv.APPROVAL_ID: f"q{t}", cv.APPROVAL_QUESTION: "Go?"}
            out.append(_fact(task, cv.EVENT_APPROVAL_REQUEST, t, ask))
    return out


def _said(events: list[Event]) -> list[tuple[str, int, Any]]:
    return [(e.event_id, e.time_ns, e.task) for e in events]


@given(facts=runs(), cut=st.integers(0, 40))
@settings(max_examples=60, deadline=None)
def test_a_restart_anywhere_says_what_one_tracker_says(facts: list[LiveFact], cut: int) -> None:
    cut = min(cut, len(facts))
    whole = TaskTracker(clock=FakeClock(), wall_clock=lambda: 10**12)
    for f in facts[:cut]:
        whole.live([f])
    after = [e for f in facts[cut:] for e in whole.live([f])]

    restarted = TaskTracker(clock=FakeClock(), wall_clock=lambda: 10**12)
    for f in facts[:cut]:  # the rebuild: its events were delivered before the restart
        restarted.live([f])
    again = [e for f in facts[cut:] for e in restarted.live([f])]
    assert _said(again) == _said(after)
    # Every open task is back with its state.
    assert {s.view.task_id: s.view for s in restarted.states()[0]} == {
        s.view.task_id: s.view for s in whole.states()[0]
    }
