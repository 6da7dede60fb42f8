"""The open-task cap (SPANVISOR_MAX_OPEN_TASKS) under a flood of start
records: work in progress stays open, what goes is finished as ``evicted``
(never ``cancelled``) and counted, and eviction stays O(1) per task."""

from __future__ import annotations

from typing import Any

from spanvisor.events import Event, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
from spanvisor.tracking.stalls import StallSettings
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock

CAP = 50


def fact(n: int, name: str, t: int, attrs: dict[str, Any] | None = None) -> LiveFact:
    return LiveFact(f"{n + 1:032x}", f"{n + 1:016x}", name, t, attrs or {}, {cv.SERVICE_NAME: "svc"})


def start(n: int, t: int = 1_000) -> LiveFact:
    return fact(n, cv.LIVE_TASK_START, t, {cv.TASK_NAME: f"task {n}", cv.AGENT_ID: "a"})


def tracker(clock: FakeClock, cap: int = CAP) -> TaskTracker:
    settings = TrackerSettings(stalls=StallSettings(after_s=60.0, lost_after_s=3600.0))
    return TaskTracker(settings, max_open_tasks=cap, clock=clock, wall_clock=lambda: int(clock.now * 1e9))


def finished(events: list[Event]) -> dict[str, TaskFinished]:
    return {e.task.task_name or "": e for e in events if isinstance(e, TaskFinished)}


def real_work(tr: TaskTracker) -> list[Event]:
    """Five real tasks: live ones that spoke after their start (a heartbeat,
    progress, a waiting approval) and two opened by their spans."""
    out: list[Event] = []
    for n in range(3):
        out += tr.live([start(n)])
    out += tr.live([fact(0, cv.LIVE_HEARTBEAT, 2_000)])
    out += tr.live([fact(1, cv.LIVE_TASK_UPDATE, 2_000, {cv.PROGRESS: 40.0})])
    ask = {cv.APPROVAL_ID: "deploy", cv.APPROVAL_QUESTION: "Deploy?"}
    out += tr.live([fact(2, cv.EVENT_APPROVAL_REQUEST, 2_000, ask)])
    for n in (3, 4):
        root = SpanData(f"{n + 1:032x}", f"{n + 1:016x}", None, "t", 1_000, None, {cv.TASK_NAME: f"task {n}"})
        out += tr.span_started(root)
    return out


def test_a_flood_of_start_records_evicts_only_unconfirmed_tasks_as_evicted() -> None:
    clock = FakeClock()
    tr = tracker(clock)
    events = real_work(tr)
    gone: dict[str, TaskFinished] = {}
    for n in range(100, 100 + 10_500):
        gone.update(finished(tr.live([start(n, 3_000)])))  # only the finished kept: 10,500 views weigh
    assert tr.open_tasks == CAP
    real = {f"task {n}" for n in range(5)}
    assert not real & (set(gone) | set(finished(events)))  # no real task finished
    held = {st.working.task_name for st in tr.states()[0]}
    assert real <= held
    assert len(gone) == 10_500 - (CAP - 5)
    assert {e.outcome for e in gone.values()} == {"evicted"}
    assert {e.error_type for e in gone.values()} == {"SpanvisorEvicted"}
    assert tr.stats.value("evicted_tasks_total", reason="capacity") == len(gone)
    assert tr.stats.value("dropped_total", reason="open_task_unconfirmed_evicted", sink="") == len(gone)
    assert tr.stats.value("dropped_total", reason="open_task_evicted", sink="") == 0
    # The waiting approval is still open on its task.
    [asking] = [st for st in tr.states()[0] if st.working.task_name == "task 2"]
    assert asking.working.approvals


def test_at_capacity_with_recent_work_a_new_start_is_refused_then_opens_when_its_agent_speaks() -> None:
    clock = FakeClock()
    tr = tracker(clock, cap=5)
    real_work(tr)
    assert tr.open_tasks == 5
    assert tr.live([start(9)]) == []  # every open task is recent: refused, not opened
    assert tr.stats.value("dropped_total", reason="open_task_refused", sink="") == 1
    assert tr.open_tasks == 5
    clock.advance(61.0)  # past the stall time: the idlest tasks may make room
    tr.live([fact(1, cv.LIVE_HEARTBEAT, 4_000), fact(2, cv.LIVE_HEARTBEAT, 4_000)])
    for n in (3, 4):  # a child span of each span-opened task ends
        tr.span_ended(SpanData(f"{n + 1:032x}", f"{n + 6:016x}", f"{n + 1:016x}", "step", 1_500, 3_900, {}))
    # Its agent speaks again: the start that waited opens the task, and task 0
    # (idle since, waiting for nobody) makes room, finished as evicted.
    out = tr.live([fact(9, cv.LIVE_HEARTBEAT, 4_000)])
    assert [type(e) for e in out][:2] == [TaskFinished, TaskStarted]
    assert isinstance(out[0], TaskFinished) and out[0].task.task_name == "task 0" and out[0].outcome == "evicted"
    # Heard of at one moment only (its start and a heartbeat), showing nothing since: counted as such.
    assert tr.stats.value("dropped_total", reason="open_task_once_evicted", sink="") == 1
    assert tr.stats.value("dropped_total", reason="open_task_evicted", sink="") == 0


def test_a_task_waiting_for_a_person_is_passed_over() -> None:
    clock = FakeClock()
    tr = tracker(clock, cap=3)
    out = tr.live([start(0)])
    ask = {cv.APPROVAL_ID: "deploy", cv.APPROVAL_QUESTION: "Deploy?"}
    out += tr.live([fact(0, cv.EVENT_APPROVAL_REQUEST, 2_000, ask)])
    for n in (1, 2, 3):
        root = SpanData(f"{n + 1:032x}", f"{n + 1:016x}", None, "t", 1_000, None, {cv.TASK_NAME: f"task {n}"})
        out += tr.span_started(root)
    # The oldest (task 0) waits for a person: task 1 goes instead.
    assert list(finished(out)) == ["task 1"]
    assert finished(out)["task 1"].outcome == "evicted"
