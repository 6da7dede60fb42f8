"""The tracker's side of the live channel, on a fake clock: records as polls
of the open root, records ahead of their task, liveness instead of a timer,
stalls and lost tasks."""

from __future__ import annotations

from typing import Any

from spanvisor.events import Checkpoint, Event, TaskFinished, TaskStalled, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, SpanEventData
from spanvisor.spans.live import LiveFact
from spanvisor.tracking.stalls import StallSettings
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock

T = "ab" * 16
R = "cd" * 8
START = {cv.TASK_NAME: "Fix the build", cv.AGENT_ID: "rivet", cv.TASK_ID: "job-1", cv.STEPS: ("plan", "do")}
CP = {cv.MESSAGE: "Planning", cv.PROGRESS: 20.0, cv.STEP: "plan"}


def fact(name: str, t: int, attrs: dict[str, Any] | None = None, root: str = R) -> LiveFact:
    return LiveFact(T, root, name, t, attrs or {}, {cv.SERVICE_NAME: "worker-pod"})


def tracker(clock: FakeClock, **stall: float) -> TaskTracker:
    settings = TrackerSettings(stalls=StallSettings(**stall)) if stall else TrackerSettings()
    return TaskTracker(settings, clock=clock, wall_clock=lambda: int(clock.now * 1e9), root_hold_s=30.0)


def root(end: int | None = 9_000, events: tuple[SpanEventData, ...] = ()) -> SpanData:
    return SpanData(T, R, None, "agent.task Fix the build", 1_000, end, dict(START), events)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def test_a_start_record_opens_the_task_with_its_name_and_agent_not_the_senders_service() -> None:
    tr = tracker(FakeClock())
    [started] = tr.live([fact(cv.LIVE_TASK_START, 1_000, START)])
    assert isinstance(started, TaskStarted)
    v = started.task
    assert (v.task_id, v.task_name, v.agent_id, v.steps) == ("job-1", "Fix the build", "rivet", ("plan", "do"))


def test_a_checkpoint_said_by_a_record_and_by_the_roots_event_is_one_fact() -> None:
    tr = tracker(FakeClock())
    live = tr.live([fact(cv.LIVE_TASK_START, 1_000, START), fact(cv.EVENT_CHECKPOINT, 2_000, CP)])
    ended = tr.span_ended(root(events=(SpanEventData(cv.EVENT_CHECKPOINT, 2_000, CP),)))
    assert kinds(live) == ["TaskStarted", "Checkpoint"] and kinds(ended) == ["TaskFinished"]
    # The same ids and times as the root read whole in end order.
    alone = TaskTracker(root_hold_s=0.0)
    whole = alone.span_ended(root(events=(SpanEventData(cv.EVENT_CHECKPOINT, 2_000, CP),))) + alone.expire()
    assert [(e.event_id, e.time_ns) for e in live + ended] == [(e.event_id, e.time_ns) for e in whole]


def test_records_before_their_start_wait_for_the_task_and_records_after_its_end_change_nothing() -> None:
    tr = tracker(FakeClock())
    assert tr.live([fact(cv.EVENT_CHECKPOINT, 2_000, CP)]) == []  # the start is still on its way
    out = tr.live([fact(cv.LIVE_TASK_START, 1_000, START)])
    assert kinds(out) == ["TaskStarted", "Checkpoint"] and out[-1].task.progress == 20.0
    tr.span_ended(root())
    assert tr.live([fact(cv.LIVE_TASK_UPDATE, 9_500, {cv.PROGRESS: 90.0})]) == []
    assert tr.stats.value("live_records_total", outcome="late") == 1


def test_an_update_record_changes_the_open_roots_state() -> None:
    tr = tracker(FakeClock())
    tr.live([fact(cv.LIVE_TASK_START, 1_000, START)])
    [cp] = tr.live([fact(cv.LIVE_TASK_UPDATE, 3_000, {cv.STATUS: "blocked", cv.MESSAGE: "waiting on CI"})])
    assert isinstance(cp, Checkpoint) and cp.source == "state"
    assert (cp.task.status, cp.task.message) == ("blocked", "waiting on CI")


def test_a_live_task_is_never_put_to_sleep_and_a_silent_one_stalls_then_is_lost() -> None:
    clock = FakeClock()
    tr = tracker(clock, after_s=600.0, lost_after_s=3600.0)
    tr.live([fact(cv.LIVE_TASK_START, 1_000, START)])
    clock.advance(300)
    assert tr.live([fact(cv.LIVE_HEARTBEAT, 2_000)]) == []  # a sign of life, nothing to show
    clock.advance(599)
    assert tr.expire() == [] and tr.open_tasks == 1  # past SPANVISOR_ROOT_HOLD, still open
    clock.advance(2)
    [stalled] = tr.expire()
    assert isinstance(stalled, TaskStalled)
    clock.advance(3600)
    [lost] = tr.expire()
    assert isinstance(lost, TaskFinished) and lost.outcome == "lost" and lost.error_type == "SpanvisorLost"
    assert lost.task.status == "lost" and tr.open_tasks == 0
    assert tr.expire() == []  # once


def test_a_partial_task_waiting_for_a_person_stays_open_past_the_root_hold() -> None:
    clock = FakeClock()
    tr = tracker(clock)
    # Only the helper's stamped request span arrived (no live records): a partial task.
    request = SpanData(
        T,
        "ef" * 8,
        R,
        cv.EVENT_APPROVAL_REQUEST,
        2_000,
        2_001,
        {cv.TASK_ID: "job-1", cv.TASK_ROOT: R, cv.AGENT_ID: "rivet"},
        (SpanEventData(cv.EVENT_APPROVAL_REQUEST, 2_000, {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Ship it?"}),),
    )
    out = tr.span_ended(request)
    assert out[0].task.agent_id == "rivet"  # the stamp names the agent from TaskStarted on
    assert out[-1].task.status == "awaiting_approval"
    clock.advance(120)
    tr.expire()
    assert tr.open_tasks == 1
    [[st], _] = tr.states_of("job-1")
    assert st.view.status == "awaiting_approval"


def test_a_task_rebuilt_after_a_restart_is_newer_than_anything_its_clock_said_before() -> None:
    # The first process: the task stalls and resumes (the clock's events,
    # in no record), then takes one more update.
    clock = FakeClock()
    first = tracker(clock, after_s=60.0, lost_after_s=3600.0)
    records = [fact(cv.LIVE_TASK_START, 1_000, START), fact(cv.LIVE_TASK_UPDATE, 2_000, {cv.PROGRESS: 10.0})]
    said = first.live(records[:1]) + first.live(records[1:])
    clock.advance(61)
    said += first.expire()
    later = fact(cv.LIVE_TASK_UPDATE, 3_000, {cv.PROGRESS: 20.0})
    records.append(later)
    said += first.live([later])
    assert kinds(said)[-3:] == ["TaskStalled", "TaskResumed", "Checkpoint"]
    newest = max(e.task.seq for e in said)
    # The restart: the same records rebuild the task, short of the clock's events.
    second = tracker(clock, after_s=60.0, lost_after_s=3600.0)
    rebuilt = second.live(records[:1]) + second.live(records[1:2]) + second.live(records[2:])
    assert max(e.task.seq for e in rebuilt) < newest  # what every sink would refuse
    assert second.rebuilt() == 1
    [update] = second.live([fact(cv.LIVE_TASK_UPDATE, 4_000, {cv.PROGRESS: 30.0})])
    assert update.task.seq > newest and update.task.progress == 30.0
    # Its next stall does not take the first one's id.
    clock.advance(61)
    [stall] = second.expire()
    assert isinstance(stall, TaskStalled) and stall.event_id not in {e.event_id for e in said}


def test_an_event_record_sent_again_without_an_id_is_read_once_and_the_roots_end_keeps_both_of_an_instant() -> None:
    # A Collector's load balancer resends a whole batch while a replica is
    # down: a plain sender's records carry no agent.record.id.
    tr = tracker(FakeClock())
    tr.live([fact(cv.LIVE_TASK_START, 1_000, START)])
    said = [fact(cv.EVENT_CHECKPOINT, 2_000, CP), fact(cv.EVENT_CHECKPOINT, 3_000, {cv.MESSAGE: "Doing"})]
    first = tr.live(said)
    again = tr.live(said) + tr.live(said[1:])
    assert kinds(first) == ["Checkpoint", "Checkpoint"] and again == []
    # Two records saying the same at one instant are one here; the root's
    # end, which carries both, adds the second (nothing lost).
    twin = fact(cv.EVENT_CHECKPOINT, 4_000, {cv.MESSAGE: "Twice"})
    assert kinds(tr.live([twin, twin])) == ["Checkpoint"]
    events = (
        SpanEventData(cv.EVENT_CHECKPOINT, 2_000, CP),
        SpanEventData(cv.EVENT_CHECKPOINT, 3_000, {cv.MESSAGE: "Doing"}),
        SpanEventData(cv.EVENT_CHECKPOINT, 4_000, {cv.MESSAGE: "Twice"}),
        SpanEventData(cv.EVENT_CHECKPOINT, 4_000, {cv.MESSAGE: "Twice"}),
    )
    assert kinds(tr.span_ended(root(events=events))) == ["Checkpoint", "TaskFinished"]


def test_records_with_ids_are_known_by_their_ids_not_by_what_they_say() -> None:
    tr = tracker(FakeClock())
    tr.live([fact(cv.LIVE_TASK_START, 1_000, START)])
    a = fact(cv.EVENT_CHECKPOINT, 2_000, {**CP, "agent.record.id": "p.1"})
    b = fact(cv.EVENT_CHECKPOINT, 2_000, {**CP, "agent.record.id": "p.2"})
    assert kinds(tr.live([a, b, a])) == ["Checkpoint", "Checkpoint"]
