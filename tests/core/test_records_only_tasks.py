"""A task only live records told of, on a replica whose Collector sent its
spans (its root's end among them) to another (issue 68, gap 1): once quiet
for the root hold, the pipeline's control asks the shared record of runs,
and a run another replica finished is no longer open here, with no end, no
stall and no loss of its own. On the tracker, with a fake clock."""

from __future__ import annotations

from typing import Any

from spanvisor.events import Event, TaskFinished, TaskStalled
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
from spanvisor.tracking.stalls import StallSettings
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock

T = "ab" * 16
R = "cd" * 8
START = {cv.TASK_NAME: "Fix the build", cv.AGENT_ID: "rivet", cv.TASK_ID: "job-1"}
HOLD = 30.0


def tracker(clock: FakeClock) -> TaskTracker:
    settings = TrackerSettings(stalls=StallSettings(after_s=60.0, lost_after_s=120.0))
    return TaskTracker(settings, clock=clock, wall_clock=lambda: int(clock.now * 1e9), root_hold_s=HOLD)


def start(t: int = 1_000) -> LiveFact:
    return LiveFact(T, R, cv.LIVE_TASK_START, t, dict(START), {cv.SERVICE_NAME: "worker"})


def child(end: int) -> SpanData:
    attrs: dict[str, Any] = {cv.TASK_ROOT: R, cv.TASK_ID: "job-1", "gen_ai.tool.name": "grep"}
    return SpanData(T, "ef" * 8, R, "execute_tool grep", end - 100, end, attrs)


def test_a_quiet_records_only_task_is_asked_about_once_a_hold_and_closed_without_an_end() -> None:
    clock = FakeClock()
    tr = tracker(clock)
    out: list[Event] = tr.live([start()])
    assert tr.records_only_quiet() == []  # not quiet yet
    clock.now += HOLD
    [(key, task_id, run_id)] = tr.records_only_quiet()
    assert (key, task_id) == ((T, R), "job-1") and run_id
    assert tr.records_only_quiet() == []  # asked: not again within the hold
    assert tr.finished_by_another_replica(key)
    out += tr.expire()
    clock.now += 200  # past the stall and the lost time: nothing said of it here
    out += tr.expire()
    assert not [e for e in out if isinstance(e, (TaskFinished, TaskStalled))]
    assert len(tr.states()[0]) == 0
    assert tr.stats.value("evicted_tasks_total", reason="finished_by_another_replica") == 1


def test_a_task_a_span_joined_is_its_own_to_end_and_never_asked_about() -> None:
    clock = FakeClock()
    tr = tracker(clock)
    tr.live([start()])
    tr.span_ended(child(2_000))
    clock.now += HOLD * 2
    assert tr.records_only_quiet() == []
    assert not tr.finished_by_another_replica((T, R))
    assert len(tr.states()[0]) == 1


def test_a_records_only_task_still_running_elsewhere_stays_open_and_stalls_as_before() -> None:
    clock = FakeClock()
    tr = tracker(clock)
    tr.live([start()])
    clock.now += HOLD
    assert len(tr.records_only_quiet()) == 1  # the shared record says running: nothing done
    clock.now += 40
    assert [e for e in tr.expire() if isinstance(e, TaskStalled)]
