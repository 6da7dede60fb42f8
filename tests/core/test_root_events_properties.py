"""An open root's events read incrementally (spans/rootevents.py) give the
events whole reads give, byte for byte: real SDK roots (with the SDK's event
limit, so the oldest events fall off the front), a random interleaving of
root events (times equal, out of order, past the limit), attribute sets,
child ends and polls, played into two trackers, one reading the root
through its cursor and one reading it whole every time (as before)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import set_span_in_context

from spanvisor.codec import event_to_dict
from spanvisor.events import Checkpoint, Event
from spanvisor.pipeline.sdkspans import snapshot_live
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanEventData, from_sdk
from spanvisor.spans.rootevents import EventCursor, read_sdk_events
from spanvisor.stats import PipelineStats
from spanvisor.tracking.stalls import StallSettings
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker
from tests.core._invariants import check_stream

T0 = 1_700_000_000_000_000_000
MS = 1_000_000

# An op: ("event", name, dt) a root event at T0 + dt ms; ("attr", progress);
# ("child", dt) a model call ending at T0 + dt ms; ("poll", dt); ("expire",
# dt): stalls said (a task stalls after 5 ms, and a poll that finds news on
# its root resumes it).
_names = st.sampled_from([cv.EVENT_CHECKPOINT, cv.EVENT_CHECKPOINT, cv.EVENT_ARTIFACT, "agent.note"])
_dt = st.integers(0, 40)  # few values: equal times and times out of order
ops = st.lists(
    st.one_of(
        st.tuples(st.just("event"), _names, _dt),
        st.tuples(st.just("attr"), st.integers(0, 100)),
        st.tuples(st.just("child"), _dt),
        st.tuples(st.just("poll"), _dt),
        st.tuples(st.just("expire"), _dt),
    ),
    max_size=60,
)


def _tracker(clock: list[int], read_events: Callable[[Any, EventCursor], bool]) -> TaskTracker:
    return TaskTracker(
        TrackerSettings(stalls=StallSettings(after_s=0.005)),
        stats=PipelineStats(),
        clock=lambda: clock[0] / 1e9,
        wall_clock=lambda: clock[0],
        snapshot=snapshot_live,
        read_events=read_events,
    )


def _whole(_live: Any, _cursor: EventCursor) -> bool:
    return False  # never followed: every read of the root is a whole one


def play(script: list[tuple[Any, ...]], limit: int) -> tuple[list[Event], list[Event]]:
    """The events of the incremental tracker and of the whole-reading one."""
    p = TracerProvider(
        resource=Resource.create({"service.name": "svc"}),
        span_limits=SpanLimits(max_events=limit),
        shutdown_on_exit=False,
    )
    tracer = p.get_tracer("t")
    clock = [T0]
    trackers = (_tracker(clock, read_sdk_events), _tracker(clock, _whole))
    out: tuple[list[Event], list[Event]] = ([], [])
    root = tracer.start_span("invoke_agent a", attributes={cv.TASK_NAME: "long", cv.AGENT_ID: "a"}, start_time=T0)
    rid = format(root.get_span_context().span_id, "016x")
    for tr, o in zip(trackers, out, strict=True):
        o.extend(tr.span_started(from_sdk(root), live=root))
    for n, op in enumerate(script, 1):
        if op[0] == "event":
            root.add_event(op[1], {"message": f"m{n}"}, timestamp=T0 + op[2] * MS)
        elif op[0] == "attr":
            root.set_attribute(cv.PROGRESS, op[1])
        elif op[0] == "child":
            clock[0] = max(clock[0], T0 + op[1] * MS)
            child = tracer.start_span(
                "chat m",
                context=set_span_in_context(root),
                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"},
                start_time=T0,
            )
            cid = format(child.get_span_context().span_id, "016x")
            child.end(end_time=T0 + op[1] * MS)
            data = from_sdk(child)
            for tr, o in zip(trackers, out, strict=True):
                tr.add_member(cid, rid)
                o.extend(tr.span_ended(data))
        else:
            clock[0] = max(clock[0], T0 + op[1] * MS)
            for tr, o in zip(trackers, out, strict=True):
                o.extend(tr.poll(now_ns=clock[0]) if op[0] == "poll" else tr.expire())
    root.end(end_time=T0 + 50 * MS)
    clock[0] = T0 + 50 * MS
    data = from_sdk(root)
    for tr, o in zip(trackers, out, strict=True):
        o.extend(tr.span_ended(data))
    return out


def _json(events: list[Event]) -> list[str]:
    return [json.dumps(event_to_dict(e), sort_keys=True, default=repr) for e in events]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.sampled_from([2, 3, 5, 128]))
def test_incremental_reads_of_an_open_root_give_what_whole_reads_give(
    script: list[tuple[Any, ...]], limit: int
) -> None:
    incremental, whole = play(script, limit)
    assert _json(incremental) == _json(whole)
    check_stream(incremental)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 8), st.integers(1, 45), st.data())
def test_a_root_past_the_event_limit_gives_each_checkpoint_once_and_in_order(
    limit: int, checkpoints: int, data: st.DataObject
) -> None:
    """Checkpoints far past the SDK's event limit (the oldest fall off the
    front while the task runs), read by child ends at least once every
    ``limit`` checkpoints: each is said once, in the order added.

    Their times differ: an event is known by its time, name and rank among
    the root's events of that time and name, and a rank shifts when an
    earlier event of the same nanosecond falls off the front (whole reads
    and incremental ones alike, as the first property checks)."""
    script: list[tuple[Any, ...]] = []
    since = 0
    for i in range(checkpoints):
        script.append(("event", cv.EVENT_CHECKPOINT, i))
        since += 1
        if since >= limit or data.draw(st.booleans()):
            script.append(("child", i))
            since = 0
    incremental, whole = play(script, limit)
    assert _json(incremental) == _json(whole)
    said = [e for e in incremental if isinstance(e, Checkpoint) and e.source == "event"]
    assert [e.task.message for e in said] == [f"m{k}" for k, op in enumerate(script, 1) if op[0] == "event"]


def test_a_cursor_follows_events_falling_off_the_front() -> None:
    cur = EventCursor()
    evs = [SpanEventData("e", t, {}) for t in range(10)]
    cur.add(evs[:4], 0)
    assert cur.until(1) == tuple(evs[:2])
    cur.add(evs[4:9], 3)  # 0..2 fell off: 0 and 1 taken, 2 never (a whole read would not see it either)
    assert cur.until(3) == (evs[3],)
    cur.add([evs[9]], 7)  # 3..6 fell off, 4..6 never taken
    assert cur.until(100) == tuple(evs[7:10])
    assert cur.until(100) == ()
    cur.add([SpanEventData("e", 5, {})], 10)  # earlier than a taken one: only a whole read will do
    assert cur.until(100) is None
    assert cur.until(100) == ()  # ... which took it
