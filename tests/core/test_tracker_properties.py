"""Properties of the TaskTracker on random span trees with junk attributes.

Pure code, hand-built SpanData, an injected clock: no threads, no SDK.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import Checkpoint, ContextWarning, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.tracking.occupancy import HYSTERESIS
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream, expected_roots, finished_roots, roots_of
from ._strategies import HUGE_INTS, traces
from ._trees import FakeClock, SpanSpec, feed_end_order, feed_start_order, stamp_trees

FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _polls(specs: list[SpanSpec], data: st.DataObject) -> list[int]:
    lo = min(s.start_ns for s in specs)
    hi = max(s.end_ns for s in specs)
    return sorted(data.draw(st.lists(st.integers(lo, hi), max_size=6), label="poll times"))


@FAST
@given(specs=traces(root_parent=True, skew=True, parallel=True), data=st.data())
def test_start_order_never_raises_and_keeps_invariants(specs: list[SpanSpec], data: st.DataObject) -> None:
    stamp_trees(specs)
    dup = data.draw(st.sets(st.sampled_from([s.span_id for s in specs])), label="resent spans")
    tracker = TaskTracker(clock=FakeClock())
    events = feed_start_order(tracker, specs, _polls(specs, data), duplicate=lambda s: s.span_id in dup)
    events += tracker.expire()
    check_stream(events)
    # Every started task finishes exactly once, when its root ends.
    started = roots_of(events)
    assert sorted(finished_roots(events)) == sorted(started)
    assert tracker.open_tasks == 0


@FAST
@given(
    specs=traces(ends_out_of_order=True, root_parent=True, skew=True, parallel=True),
    stamped=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_end_order_never_raises_and_keeps_invariants(specs: list[SpanSpec], stamped: bool, seed: int) -> None:
    stamp_trees(specs)
    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    events = feed_end_order(tracker, specs, random.Random(seed), stamped=stamped, clock=clock)
    check_stream(events)
    assert roots_of(events) == expected_roots(specs)
    assert sorted(finished_roots(events)) == sorted(roots_of(events))
    assert tracker.open_tasks == 0


@FAST
@given(specs=traces(root_parent=True), data=st.data())
def test_replay_into_a_fresh_tracker_gives_the_same_ids(specs: list[SpanSpec], data: st.DataObject) -> None:
    stamp_trees(specs)
    polls = _polls(specs, data)
    first = feed_start_order(TaskTracker(clock=FakeClock()), specs, polls)
    again = feed_start_order(TaskTracker(clock=FakeClock()), specs, polls)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert first == again

    seed = data.draw(st.integers(0, 2**32), label="seed")
    clock = FakeClock()
    one = feed_end_order(TaskTracker(clock=clock), specs, random.Random(seed), stamped=False, clock=clock)
    two = feed_end_order(TaskTracker(clock=clock), specs, random.Random(seed), stamped=False, clock=clock)
    assert [e.event_id for e in one] == [e.event_id for e in two]


@FAST
@given(specs=traces(root_parent=True), data=st.data())
def test_resent_spans_add_nothing(specs: list[SpanSpec], data: st.DataObject) -> None:
    stamp_trees(specs)
    polls = _polls(specs, data)
    clean = feed_start_order(TaskTracker(), specs, polls)
    resent = feed_start_order(TaskTracker(), specs, polls, duplicate=lambda s: True)
    assert [e.event_id for e in resent] == [e.event_id for e in clean]

    # The exporter path: the whole stream delivered twice (a client retry).
    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    seed = data.draw(st.integers(0, 2**32), label="seed")
    once = feed_end_order(tracker, specs, random.Random(seed), stamped=True, clock=clock)
    twice = feed_end_order(tracker, specs, random.Random(seed), stamped=True, clock=clock)
    assert once and not twice
    # Spans that can cause events are recognised as resent; plain ones are
    # not remembered (they would crowd the dedup window) and change nothing.
    # So the count lies between the spans that plainly carry something (a
    # checkpoint or artifact event, an exception, an error status, a known key
    # beyond the stamps) and all of them.
    assert len([s for s in specs if _carries_content(s)]) <= tracker.stats.total("duplicate_spans_total") <= len(specs)


def _carries_content(spec: SpanSpec) -> bool:
    """Whether a span, as it ends, has what the conventions say can cause an event."""
    ended = spec.data(None, stamped=True)
    if ended.error or any(e.name in cv.KNOWN_EVENTS or e.name == cv.EVENT_EXCEPTION for e in ended.events):
        return True
    return any(k in cv.KNOWN_KEYS and k not in cv.STAMP_KEYS for k in ended.attributes)


# -- context thresholds: an exact oracle ----------------------------------------

TRACE = "0" * 31 + "7"
ROOT = "00000000000000aa"
LIMIT = 200_000


def _model_calls(usages: list[tuple[int, int]], model: str = "claude-sonnet-4-20250514") -> list[SpanSpec]:
    root = SpanSpec(TRACE, ROOT, None, "task", 1_000, 1_000 + 100 * (len(usages) + 2))
    root.start_attrs = {cv.TASK_NAME: "compacting agent", cv.AGENT_ID: "rivet"}
    specs = [root]
    for i, (t_in, t_out) in enumerate(usages):
        start = 1_000 + 100 * (i + 1)
        call = SpanSpec(TRACE, f"{i + 1:016x}", ROOT, f"chat {model}", start, start + 50)
        call.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: model}
        call.updates = [(start + 50, {cv.GEN_AI_INPUT: t_in, cv.GEN_AI_OUTPUT: t_out})]
        specs.append(call)
    return specs


def _expected_warnings(usages: list[tuple[int, int]], thresholds: tuple[float, ...]) -> list[tuple[float, int]]:
    """(threshold, crossing number) for each upward crossing of the occupancy;
    a level re-arms only once the ratio is HYSTERESIS below it."""
    out = []
    crossings = dict.fromkeys(thresholds, 0)
    armed = dict.fromkeys(thresholds, True)
    for t_in, t_out in usages:
        ratio = (t_in + t_out) / LIMIT
        for t in thresholds:
            if ratio >= t and armed[t]:
                armed[t] = False
                crossings[t] += 1
                out.append((t, crossings[t]))
            elif ratio < t - HYSTERESIS:
                armed[t] = True
    return out


usages = st.lists(st.tuples(st.integers(0, 220_000), st.integers(0, 10_000)), min_size=1, max_size=12)


@settings(max_examples=80, deadline=None)
@given(usages=usages, end_order=st.booleans())
def test_each_threshold_fires_once_per_upward_crossing(usages: list[tuple[int, int]], end_order: bool) -> None:
    specs = _model_calls(usages)
    stamp_trees(specs)
    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    if end_order:
        # As an exporter sends them: in the order they ended, which is the
        # order a task's spans take effect in on every path (not their end
        # times, docs/reference/conventions.md#clock-skew).
        events = feed_end_order(tracker, specs, None, stamped=False, clock=clock, batch=100)
    else:
        events = feed_start_order(tracker, specs)
    check_stream(events)
    warnings = [e for e in events if isinstance(e, ContextWarning)]
    got = [(w.threshold, w.level) for w in warnings]
    want = [(t, "critical" if t == 0.85 else "warning") for t, _ in _expected_warnings(usages, (0.70, 0.85))]
    assert got == want
    # Occupancy is the latest call's input + output, never the running sum.
    done = events[-1]
    assert isinstance(done, TaskFinished)
    assert done.task.context_tokens == sum(usages[-1])
    assert done.task.input_tokens == sum(u[0] for u in usages)
    assert done.task.output_tokens == sum(u[1] for u in usages)
    assert done.task.context_limit == LIMIT


def test_threshold_rearms_after_compaction() -> None:
    # 75 % → warning; 80 % → nothing; compaction to 10 %; 90 % → warning and critical.
    specs = _model_calls([(148_000, 2_000), (158_000, 2_000), (19_000, 1_000), (178_000, 2_000)])
    stamp_trees(specs)
    events = feed_start_order(TaskTracker(), specs)
    check_stream(events)
    warnings = [e for e in events if isinstance(e, ContextWarning)]
    assert [(w.threshold, w.level, w.tokens, w.limit) for w in warnings] == [
        (0.70, "warning", 150_000, LIMIT),
        (0.70, "warning", 180_000, LIMIT),
        (0.85, "critical", 180_000, LIMIT),
    ]
    assert warnings[0].event_id != warnings[1].event_id
    assert [e.task.status for e in events if isinstance(e, Checkpoint) and e.source == "model_call"] == [
        "context_warning",
        "context_warning",
        "working",
        "context_warning",
    ]


def test_custom_thresholds() -> None:
    from spanvisor.tracking.taskstate import TrackerSettings

    specs = _model_calls([(100_000, 0), (190_000, 0)])
    stamp_trees(specs)
    events = feed_start_order(TaskTracker(TrackerSettings(thresholds=(0.5, 0.6, 0.9))), specs)
    check_stream(events, thresholds=(0.5, 0.6, 0.9))
    got = [(w.threshold, w.level) for w in events if isinstance(w, ContextWarning)]
    assert got == [(0.5, "warning"), (0.6, "warning"), (0.9, "critical")]


# -- hold and expiry with an injected clock ----------------------------------------


def test_root_whose_parent_never_arrives_is_held_then_released() -> None:
    """An agent span under an HTTP span from another process (never exported
    here): the tracker cannot know at once whether it has a task ancestor, so
    it holds it for root_hold_s, then makes it a task of its own."""
    root = SpanSpec(TRACE, ROOT, "00000000000000ff", "invoke_agent planner", 1_000, 9_000)
    root.start_attrs = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "planner"}
    child = SpanSpec(TRACE, "00000000000000ab", ROOT, "chat", 2_000, 3_000)
    child.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 10, cv.GEN_AI_OUTPUT: 5}
    clock = FakeClock()
    tracker = TaskTracker(clock=clock, root_hold_s=30.0)
    assert tracker.span_ended(child.data(None, stamped=False)) == []
    assert tracker.span_ended(root.data(None, stamped=False)) == []
    clock.advance(29.0)
    assert tracker.expire() == []
    clock.advance(1.5)
    events = tracker.expire()
    assert isinstance(events[0], TaskStarted) and isinstance(events[-1], TaskFinished)
    assert [e.source for e in events if isinstance(e, Checkpoint) and e.source == "model_call"] == ["model_call"]
    assert events[-1].task.input_tokens == 10
    assert tracker.expire() == []


def test_root_under_a_local_plain_parent_resolves_when_the_parent_ends() -> None:
    root = SpanSpec(TRACE, ROOT, "00000000000000ff", "invoke_agent planner", 1_000, 9_000)
    root.start_attrs = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "planner"}
    http = SpanSpec(TRACE, "00000000000000ff", None, "POST /run", 500, 9_500)
    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    assert tracker.span_ended(root.data(None, stamped=False)) == []
    events = tracker.span_ended(http.data(None, stamped=False))
    assert isinstance(events[0], TaskStarted) and isinstance(events[-1], TaskFinished)
    assert events[0].task.agent_id == "planner"


def test_remote_parent_makes_a_root_at_once() -> None:
    root = SpanSpec(TRACE, ROOT, "00000000000000ff", "invoke_agent planner", 1_000, 9_000, parent_remote=True)
    root.start_attrs = {cv.GEN_AI_OPERATION: "invoke_agent"}
    events = TaskTracker(clock=FakeClock()).span_ended(root.data(None, stamped=False))
    assert isinstance(events[0], TaskStarted) and isinstance(events[-1], TaskFinished)


def test_open_tasks_are_capped_and_evictions_counted() -> None:
    tracker = TaskTracker(max_open_tasks=3, clock=FakeClock())
    events = []
    specs = []
    for i in range(5):
        s = SpanSpec(f"{i + 1:032x}", f"{i + 1:016x}", None, "t", 1_000 + i, 2_000 + i)
        s.start_attrs = {cv.TASK_NAME: f"task {i}"}
        specs.append(s)
        events += tracker.span_started(s.data(s.start_ns, stamped=False))
    assert tracker.open_tasks == 3
    # An evicted task still finishes once, so no sink shows it running forever.
    evicted = [e for e in events if isinstance(e, TaskFinished)]
    assert [(e.task.task_name, e.outcome) for e in evicted] == [("task 0", "evicted"), ("task 1", "evicted")]
    # Its root's late end adds nothing.
    for s in specs:
        events += tracker.span_ended(s.data(None, stamped=False))
    check_stream(events)
    assert sorted(finished_roots(events)) == sorted(roots_of(events))
    assert tracker.stats.value("evicted_tasks_total", reason="capacity") == 2
    # Each heard of at one moment only (its root's start): the oldest such go first, counted as such.
    assert tracker.stats.value("dropped_total", reason="open_task_once_evicted", sink="") == 2


def test_pending_spans_are_bounded_and_counted() -> None:
    tracker = TaskTracker(max_pending_spans=10, clock=FakeClock())
    for i in range(30):
        # Spans of tasks whose roots never arrive, each in its own trace.
        s = SpanSpec(f"{i + 1:032x}", f"{i + 1:016x}", "00000000000000ff", "chat", 1_000, 2_000)
        s.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 1}
        tracker.span_ended(s.data(None, stamped=False))
    assert tracker.stats.value("dropped_total", reason="pending_spans_evicted", sink="") == 20


# -- regressions: bugs these properties found in the core ----------------------------


def test_ints_beyond_float_range_do_not_break_the_tracker() -> None:
    for huge in HUGE_INTS:
        specs = _model_calls([(1_000, 10)])
        specs[1].updates = [(specs[1].end_ns, {cv.GEN_AI_INPUT: huge, cv.GEN_AI_OUTPUT: 5})]
        specs[0].start_attrs[cv.PROGRESS] = huge
        stamp_trees(specs)
        events = feed_start_order(TaskTracker(), specs)
        check_stream(events)
        assert any("agent.progress" in n for e in events for n in e.notes)


def test_span_started_after_its_task_ended_does_not_open_a_phantom_task() -> None:
    """Async work outlives the task root: a tool span started by a child that
    is still running after the root ended. The processor stamps it with the
    task's id, so the tracker must not open a second task with that id (it
    would repeat TaskStarted/TaskFinished event ids with other content)."""

    root = SpanSpec(TRACE, ROOT, None, "task", 1_000, 5_000)
    root.start_attrs = {cv.TASK_NAME: "fire and forget", cv.TASK_ID: "T-late"}
    child = SpanSpec(TRACE, "00000000000000b1", ROOT, "background", 2_000, 9_000)
    late = SpanSpec(TRACE, "00000000000000b2", child.span_id, "late tool", 6_000, 7_000)
    late.start_attrs = {"http.request.method": "GET"}
    specs = [root, child, late]
    stamp_trees(specs)
    tracker = TaskTracker(clock=FakeClock())
    events = feed_start_order(tracker, specs)
    check_stream(events)
    assert [type(e) for e in events if not isinstance(e, Checkpoint)] == [TaskStarted, TaskFinished]
    assert tracker.open_tasks == 0
