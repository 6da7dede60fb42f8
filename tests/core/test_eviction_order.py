"""Past the open-task cap (SPANVISOR_MAX_OPEN_TASKS), a task goes by what
it has shown before its age, and live sessions are never evicted by
strangers (issue 64).

The issue's reproducer: 11,000 Claude Code sessions of one model call each
pushed out a real session that had reported 2 s earlier, heard of at one
moment only as they were: only its age told it from the flood, and the
oldest went first. Here the order is (``tracking.tasktable.TaskTable._victim``):
a task only its start record spoke of; a one-shot (heard of at one moment,
its start and at most one more event); one silent for longer than its stall
time; one heard of at one moment that showed more; then the least shown of
the live. Each eviction is counted once, under its reason. Every clock is a
fake one: nothing here waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from spanvisor.events import Event, TaskFinished
from spanvisor.receiver.codingagents.ids import session_task
from spanvisor.receiver.codingagents.sessions import SESSIONS
from spanvisor.receiver.codingagents.spans import calls_request
from spanvisor.receiver.decode import decode_request
from spanvisor.receiver.logs import decode_logs
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.live import LiveFact
from spanvisor.tracking.stalls import StallSettings
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tasktable import EVICTED_AS
from spanvisor.tracking.tracker import TaskTracker
from tests.receiver.coding_sessions import Rec, claude, request

from ._trees import FakeClock

T0 = 1_795_000_000_000_000_000
CAP = 50
FLOOD = 11_000
STALL_S = 60.0
REASONS = sorted(set(EVICTED_AS.values()))


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    SESSIONS.clear()
    yield
    SESSIONS.clear()


def tracker(clock: FakeClock, cap: int = CAP) -> TaskTracker:
    settings_ = TrackerSettings(stalls=StallSettings(after_s=STALL_S, lost_after_s=3600.0))
    return TaskTracker(settings_, max_open_tasks=cap, clock=clock, wall_clock=lambda: T0 + int(clock.now * 1e9))


def feed(tr: TaskTracker, req: ExportLogsServiceRequest, heard_ns: int) -> list[Event]:
    """One OTLP logs request as ``serve`` reads it: live records, then the calls as spans."""
    decoded = decode_logs(req, heard_ns)
    out = tr.live(decoded.live)
    if decoded.coding is not None:
        calls = calls_request(decoded.coding)
        if calls is not None:
            for span in decode_request(calls).spans:
                out.extend(tr.span_ended(span))
    return out


def one_call(session_id: str) -> Rec:
    attrs = {
        "session.id": session_id,
        "prompt.id": "p-1",
        "event.sequence": 1,
        "event.name": "api_request",
        "model": "claude-sonnet-4-5",
        "input_tokens": 1_000,
        "output_tokens": 10,
    }
    return Rec("claude_code.api_request", attrs, "claude_code.api_request", True)


def flood(tr: TaskTracker, clock: FakeClock, t: int, n: int = FLOOD) -> list[TaskFinished]:
    """``n`` sessions of one request and one model call each, within 1.4 s."""
    s = claude("forged")
    s.records = [one_call("forged")]
    template = request(s, None, t)
    ended: list[TaskFinished] = []
    for i in range(n):
        req = ExportLogsServiceRequest()
        req.CopyFrom(template)
        rec = req.resource_logs[0].scope_logs[0].log_records[0]
        next(kv for kv in rec.attributes if kv.key == "session.id").value.string_value = f"forged-{i}"
        clock.advance(1.4 / n)
        ended += [e for e in feed(tr, req, t + int(i * 1.4e9 / n)) if isinstance(e, TaskFinished)]
    return ended


def drops(tr: TaskTracker) -> dict[str, float]:
    return {r: tr.stats.value("dropped_total", reason=r, sink="") for r in REASONS}


def open_ids(tr: TaskTracker) -> set[str]:
    return {s.working.task_id for s in tr.states()[0]}


# -- the reproducer, on the receiver's path ------------------------------------


def test_a_flood_of_one_call_sessions_never_evicts_a_session_heard_once_2_s_earlier() -> None:
    clock = FakeClock()
    tr = tracker(clock)
    t = T0
    real = claude("real")
    # Its first export: the prompt, a model call, the tool it ran. Heard of at one moment only, like the flood.
    feed(tr, request(real, real.records[:4], t), t)
    task_id = session_task("claude-code", "real")[0]
    assert open_ids(tr) == {task_id}
    clock.advance(2.0)
    t += 2_000_000_000
    ended = flood(tr, clock, t)
    assert task_id in open_ids(tr), "the real session is still open"
    assert all(e.task.task_id.startswith("claude-code:forged-") and e.outcome == "evicted" for e in ended)
    assert tr.open_tasks == CAP
    # Its next export is read, not ignored as a finished task's.
    clock.advance(3.0)
    t += 5_000_000_000
    before = tr.stats.value("live_records_total", outcome="read")
    out = feed(tr, request(real, real.records[4:], t), t)
    assert not any(isinstance(e, TaskFinished) and e.task.task_id == task_id for e in out)
    assert tr.stats.value("live_records_total", outcome="read") > before
    [state] = [s for s in tr.states()[0] if s.working.task_id == task_id]
    assert state.working.input_tokens == real.input_tokens
    # Every eviction a one-shot's, counted once; the rest of the flood refused.
    counted = drops(tr)
    assert counted["open_task_once_evicted"] == len(ended) == tr.stats.value("evicted_tasks_total", reason="capacity")
    assert sum(counted.values()) == len(ended)
    assert len({e.task.task_id for e in ended}) == len(ended)
    refused = tr.stats.value("dropped_total", reason="open_task_refused", sink="")
    assert len(ended) + refused >= FLOOD - CAP


def test_a_session_waiting_for_a_person_heard_once_outlives_the_flood() -> None:
    clock = FakeClock()
    tr = tracker(clock)
    t = T0
    asking = claude("asking")
    feed(tr, request(asking, asking.records[:2], t), t)  # the prompt and one call: no more than a one-shot
    _, trace, root = session_task("claude-code", "asking")
    ask = {cv.APPROVAL_ID: "h-1", cv.APPROVAL_QUESTION: "Allow Bash(rm -rf build)?"}
    tr.live([LiveFact(trace, root, cv.EVENT_APPROVAL_REQUEST, t, ask, {cv.SERVICE_NAME: "claude-code"}, t)])
    clock.advance(2.0)
    flood(tr, clock, t + 2_000_000_000, 2_000)
    assert session_task("claude-code", "asking")[0] in open_ids(tr)


# -- the order, by example ------------------------------------------------------------


def fact(n: int, name: str, t: float, attrs: dict[str, Any] | None = None) -> LiveFact:
    ns = T0 + int(t * 1e9)
    return LiveFact(f"{n + 1:032x}", f"{n + 1:016x}", name, ns, attrs or {}, {cv.SERVICE_NAME: "svc"}, ns)


def start(n: int, t: float) -> LiveFact:
    return fact(n, cv.LIVE_TASK_START, t, {cv.TASK_NAME: f"task {n}", cv.AGENT_ID: "a"})


def root(n: int, t: float) -> SpanData:
    """An in-process root as it starts: opened whatever the cap (an eviction makes room)."""
    return SpanData(f"{n + 1:032x}", f"{n + 1:016x}", None, "t", T0 + int(t * 1e9), None, {cv.TASK_NAME: f"task {n}"})


def progress(n: int, t: float, value: float) -> LiveFact:
    return fact(n, cv.LIVE_TASK_UPDATE, t, {cv.PROGRESS: value})


def evicted(events: list[Event]) -> list[str]:
    return [e.task.task_name or "" for e in events if isinstance(e, TaskFinished) and e.outcome == "evicted"]


def test_each_kind_goes_in_its_turn_and_is_counted_under_its_reason() -> None:
    clock = FakeClock()
    tr = tracker(clock, cap=5)
    # task 0: heard over time, then silent past its stall time.
    tr.live([start(0, clock.now), progress(0, clock.now, 10.0)])
    clock.advance(2.0)
    tr.live([progress(0, clock.now, 20.0)])
    # task 1: heard over time, speaking now.
    tr.live([start(1, clock.now), progress(1, clock.now, 10.0)])
    clock.advance(STALL_S)
    t = clock.now
    tr.live([progress(1, t, 30.0)])
    # task 2: heard of once, showing more than a one-shot (its state, a checkpoint).
    tr.live([start(2, t), progress(2, t, 10.0), fact(2, cv.EVENT_CHECKPOINT, t, {cv.MESSAGE: "on it"})])
    # task 3: a one-shot (its start and a heartbeat). task 4: only its start record.
    tr.live([start(3, t), fact(3, cv.LIVE_HEARTBEAT, t)])
    tr.live([start(4, t)])
    assert tr.open_tasks == 5
    order: list[str] = []
    for n in range(10, 15):  # five roots force five evictions; each speaks again a second later
        order += evicted(tr.span_started(root(n, clock.now)))
        clock.advance(1.0)
        tr.live([fact(n, cv.LIVE_HEARTBEAT, clock.now)])
    # The start record alone, the one-shot, the silent one, the one heard once that showed more,
    # then of the live the one that showed the least (root 10: its start and heartbeats).
    assert order == ["task 4", "task 3", "task 0", "task 2", "task 10"]
    counted = drops(tr)
    assert counted == {
        "open_task_unconfirmed_evicted": 1,
        "open_task_once_evicted": 1,
        "open_task_idle_evicted": 1,
        "open_task_evicted": 2,
    }
    assert tr.stats.value("evicted_tasks_total", reason="capacity") == 5
    assert "task 1" in {s.working.task_name for s in tr.states()[0]}


def test_a_live_task_that_showed_more_outlasts_a_newer_one_that_showed_less() -> None:
    clock = FakeClock()
    tr = tracker(clock, cap=2)
    tr.live([start(0, clock.now), progress(0, clock.now, 10.0)])
    tr.live([start(1, clock.now)])
    clock.advance(2.0)
    # Both heard over time: task 0 with its state, task 1 with heartbeats only; task 0 is the idler.
    tr.live([progress(0, clock.now, 20.0), fact(0, cv.EVENT_CHECKPOINT, clock.now, {cv.MESSAGE: "half way"})])
    tr.live([fact(1, cv.LIVE_HEARTBEAT, clock.now)])
    clock.advance(1.0)
    tr.live([fact(1, cv.LIVE_HEARTBEAT, clock.now)])
    assert evicted(tr.span_started(root(5, clock.now))) == ["task 1"]
    assert drops(tr)["open_task_evicted"] == 1


# -- the property ---------------------------------------------------------------------

OPS = ("start", "beat", "progress", "ask", "root", "wait", "wait_long")


@st.composite
def scripts(draw: Any) -> list[tuple[str, int]]:
    return draw(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 9)), min_size=1, max_size=80))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=scripts(), cap=st.integers(1, 5))
def test_no_live_task_goes_while_a_stranger_remains_and_each_eviction_is_counted_once(
    script: list[tuple[str, int]], cap: int
) -> None:
    clock = FakeClock()
    tr = tracker(clock, cap=cap)
    table = tr.tasks
    finished_ids: list[str] = []
    seen_roots: set[int] = set()
    for op, n in script:
        t = clock.now
        before = drops(tr)
        if op == "start":
            out = tr.live([start(n, t)])
        elif op == "beat":
            out = tr.live([fact(n, cv.LIVE_HEARTBEAT, t)])
        elif op == "progress":
            out = tr.live([progress(n, t, float(n))])
        elif op == "ask":
            out = tr.live([fact(n, cv.EVENT_APPROVAL_REQUEST, t, {cv.APPROVAL_ID: f"q{n}", cv.APPROVAL_QUESTION: "?"})])
        elif op == "root":
            if n in seen_roots:
                continue
            seen_roots.add(n)
            out = tr.span_started(root(n, t))
        else:
            clock.advance(0.5 if op == "wait" else STALL_S + 1)
            out = tr.expire()
        assert tr.open_tasks <= cap
        gone = [e for e in out if isinstance(e, TaskFinished) and e.outcome == "evicted"]
        finished_ids += [e.task.task_id for e in gone]
        after = drops(tr)
        delta = {r: after[r] - before[r] for r in REASONS}
        # Each eviction counted once, under one reason.
        assert sum(delta.values()) == len(gone)
        assert len(finished_ids) == len(set(finished_ids))
        newcomer = (f"{n + 1:032x}", f"{n + 1:016x}")
        strangers = [k for k in table.unconfirmed if k != newcomer] + [
            k for k in table.once if k != newcomer and k in table.open and table._shown(table.open[k]) == 0
        ]
        if delta["open_task_evicted"] or delta["open_task_idle_evicted"]:
            # A task that was not a stranger went: no stranger was left to go instead.
            assert not strangers
        if delta["open_task_evicted"]:
            # One that spoke within its stall time went: none was silent for longer.
            now = clock.now
            silent = [
                k
                for k, s in table.open.items()
                if k != newcomer and not s.working.approvals and now - table.stalls.seen.get(k, now) >= table._window(s)
            ]
            assert not silent
    assert tr.stats.value("evicted_tasks_total", reason="capacity") == sum(drops(tr).values())
