"""Regression tests for what the tracker shows on the real SDK.

Each test is written from the issue's reproducer and failed before its fix.
"""

from __future__ import annotations

import random
import time

from opentelemetry.trace import Status, StatusCode

from spanvisor.agent import task
from spanvisor.events import Checkpoint, ContextWarning, Event, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream
from ._sdk import Agent
from ._trees import SpanSpec, by_task, event, feed_end_order, feed_start_order, stamp_trees


def _chat(agent: Agent, tokens_in: int, tokens_out: int = 100, model: str = "claude-sonnet-4") -> None:
    with agent.tracer.start_as_current_span("chat", attributes={cv.GEN_AI_OPERATION: "chat"}) as call:
        call.set_attributes({cv.GEN_AI_REQUEST_MODEL: model, cv.GEN_AI_INPUT: tokens_in, cv.GEN_AI_OUTPUT: tokens_out})


def _shape(events: list[Event]) -> list[tuple[str, float | None, int | None]]:
    out = []
    for e in events:
        label = e.kind if not isinstance(e, Checkpoint) else f"{e.source}"
        out.append((label, e.task.progress, e.task.context_tokens))
    return out


def test_checkpoints_and_model_calls_leave_in_time_order_with_their_own_state(
    agent: Agent, memory: InMemorySink
) -> None:
    """Item 1: a checkpoint added after a chat ended must not overtake it or
    lend it its progress; sinks then end on the real final state."""
    with task("migrate", agent_id="rivet", tracer=agent.tracer) as t:
        _chat(agent, 130_000)
        t.checkpoint("step A", progress=40)
        time.sleep(0.05)
        _chat(agent, 150_000)
        t.checkpoint("step B", progress=60)
    assert agent.flush()
    events = memory.events
    check_stream(events)
    times = [e.time_ns for e in events]
    assert times == sorted(times)
    assert [e.task.seq for e in events] == list(range(1, len(events) + 1))
    assert _shape(events) == [
        ("TaskStarted", None, None),
        ("model_call", None, 130_100),
        ("event", 40, 130_100),
        ("model_call", 40, 150_100),
        ("ContextWarning", 40, 150_100),
        ("event", 60, 150_100),
        ("TaskFinished", 60, 150_100),
    ]
    assert memory.of_type(ContextWarning)[0].task.status == "context_warning"


def test_before_the_first_poll_an_earlier_checkpoint_is_not_overtaken(memory: InMemorySink) -> None:
    """Item 1, the other way round: with no poll yet, a checkpoint on the root
    before a chat ended is read before that chat, not after it."""
    from ._sdk import _config

    a = Agent([memory], config=_config(SPANVISOR_POLL_INTERVAL="3600"))
    try:
        with task("migrate", agent_id="rivet", tracer=a.tracer) as t:
            t.checkpoint("planned", progress=10)
            _chat(a, 50_000)
        assert a.flush()
    finally:
        a.close()
    shape = _shape(memory.events)
    assert shape[1:3] == [("event", 10, None), ("model_call", 10, 50_100)], shape


def _tree_with_stamped_children(stamp_root: bool) -> list[SpanSpec]:
    trace = f"{7:032x}"
    root = SpanSpec(trace, f"{1:016x}", None, "invoke_agent researcher", 1_000, 10_000)
    root.start_attrs = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "researcher"}
    root.events = [event(cv.EVENT_CHECKPOINT, 9_000, {cv.PROGRESS: 90, "message": "almost"})]
    child = SpanSpec(trace, f"{2:016x}", root.span_id, "chat", 2_000, 3_000)
    child.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
    child.updates = [(3_000, {cv.GEN_AI_INPUT: 1_000, cv.GEN_AI_OUTPUT: 10})]
    specs = [root, child]
    stamp_trees(specs)
    if not stamp_root:
        root.stamp = {}
    return specs


def test_an_unstamped_root_after_stamped_children_finishes_the_same_task() -> None:
    """Item 2: no second TaskStarted, and the finish keeps progress and message."""
    specs = _tree_with_stamped_children(stamp_root=False)
    tracker = TaskTracker()
    events = []
    for s in (specs[1], specs[0]):  # children first, root last, root unstamped
        events += tracker.span_ended(s.data(None, stamped=bool(s.stamp)))
    check_stream(events)
    assert sum(isinstance(e, TaskStarted) for e in events) == 1
    done = events[-1]
    assert isinstance(done, TaskFinished)
    assert (done.task.progress, done.task.message, done.task.input_tokens) == (90, "almost", 1_000)
    assert done.task.task_name == "invoke_agent researcher"  # named on every path
    assert tracker.open_tasks == 0


def test_stamped_end_order_names_an_agent_root_with_children() -> None:
    """An invoke_agent root with one child, stamped, in end order."""
    specs = _tree_with_stamped_children(stamp_root=True)
    events = feed_end_order(TaskTracker(), specs, random.Random(1), stamped=True)
    assert events[-1].task.task_name == "invoke_agent researcher"
    in_process = feed_start_order(TaskTracker(), specs)
    assert in_process[-1].task.task_name == "invoke_agent researcher"


def test_side_calls_do_not_reset_context_occupancy(agent: Agent, memory: InMemorySink) -> None:
    """Item 3: an embeddings call and a sub-agent's small chat leave the main
    conversation's occupancy, model and warning state alone."""
    with task("research", agent_id="rivet", tracer=agent.tracer):
        _chat(agent, 150_400)
        with agent.tracer.start_as_current_span("embeddings", attributes={cv.GEN_AI_OPERATION: "embeddings"}) as emb:
            emb.set_attributes({cv.GEN_AI_REQUEST_MODEL: "text-embedding-3-small", cv.GEN_AI_INPUT: 800})
        with agent.tracer.start_as_current_span(
            "invoke_agent summariser", attributes={cv.GEN_AI_OPERATION: "invoke_agent"}
        ):
            _chat(agent, 700, model="claude-haiku-4")
        _chat(agent, 152_000)
    assert agent.flush()
    events = memory.events
    check_stream(events)
    after_first = [e for e in events if e.task.context_tokens is not None]
    assert all(e.task.context_tokens >= 150_500 for e in after_first), _shape(events)
    assert all(e.task.model == "claude-sonnet-4" for e in after_first)
    assert all(e.task.status == "context_warning" for e in after_first if not isinstance(e, TaskFinished))
    warnings = memory.of_type(ContextWarning)
    assert [w.threshold for w in warnings] == [0.70]  # once, not again when the main conversation resumes
    done = events[-1]
    assert done.task.input_tokens == 150_400 + 800 + 700 + 152_000


def test_compaction_rearms_a_warning_only_well_below_its_level(agent: Agent, memory: InMemorySink) -> None:
    with task("long", agent_id="rivet", tracer=agent.tracer):
        _chat(agent, 141_000)  # 70.5 %: fires
        _chat(agent, 135_000)  # 67.5 %: just below, stays disarmed
        _chat(agent, 142_000)  # back over: no second warning
        _chat(agent, 40_000)  # compacted: 20 %, re-armed
        _chat(agent, 141_000)  # fires again
    assert agent.flush()
    assert [w.threshold for w in memory.of_type(ContextWarning)] == [0.70, 0.70]
    check_stream(memory.events)


def test_the_roots_own_error_beats_a_handled_child_exception(agent: Agent, memory: InMemorySink) -> None:
    """Item 4."""
    with agent.tracer.start_as_current_span("run", attributes={cv.TASK_NAME: "budgeted"}) as root:
        with agent.tracer.start_as_current_span("tool") as tool:
            tool.record_exception(ValueError("retry 1 of 3"))
            tool.set_status(Status(StatusCode.ERROR, "retry 1 of 3"))
        root.set_status(Status(StatusCode.ERROR, "budget exceeded"))
    assert agent.flush()
    done = memory.of_type(TaskFinished)[0]
    assert (done.outcome, done.error_type, done.error_message) == ("error", None, "budget exceeded")


def test_a_child_error_is_the_cause_only_when_the_root_says_nothing(agent: Agent, memory: InMemorySink) -> None:
    with agent.tracer.start_as_current_span("run", attributes={cv.TASK_NAME: "silent"}) as root:
        with agent.tracer.start_as_current_span("tool") as tool:
            tool.record_exception(TimeoutError("gateway timed out"))
            tool.set_status(Status(StatusCode.ERROR))
        root.set_status(Status(StatusCode.ERROR))
    assert agent.flush()
    done = memory.of_type(TaskFinished)[0]
    assert (done.error_type, done.error_message) == ("TimeoutError", "gateway timed out")


def test_views_never_go_back_per_task(agent: Agent, memory: InMemorySink) -> None:
    """Sinks keep the highest seq; seq and time agree on every task."""
    with task("a", agent_id="x", tracer=agent.tracer) as t1, task("b", agent_id="y", tracer=agent.tracer) as t2:
        for i in range(5):
            t1.checkpoint(f"a{i}", progress=i * 10)
            _chat(agent, 1_000 * (i + 1))
            t2.checkpoint(f"b{i}", progress=i * 20)
    assert agent.flush()
    for evs in by_task(memory.events).values():
        assert [e.task.seq for e in evs] == list(range(1, len(evs) + 1))
        assert [e.time_ns for e in evs] == sorted(e.time_ns for e in evs)


def test_a_root_named_only_by_late_attributes_is_a_task_in_process(agent: Agent, memory: InMemorySink) -> None:
    """Item 5: gen_ai.operation.name=invoke_agent set after the span started."""
    with agent.tracer.start_as_current_span("invoke_agent planner") as root:
        root.set_attributes({cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "planner"})
        root.add_event(cv.EVENT_CHECKPOINT, {"message": "planned", cv.PROGRESS: 50})
    assert agent.flush()
    events = memory.events
    check_stream(events, all_finished=True)
    assert [e.kind for e in events] == ["TaskStarted", "Checkpoint", "TaskFinished"]
    done = events[-1]
    assert (done.task.task_name, done.task.agent_id, done.task.progress) == ("invoke_agent planner", "planner", 50)


def test_a_clamped_time_is_said_in_the_notes_of_the_events_it_causes() -> None:
    """Item 8: the receiver clamps an absurd end time; the task finishes and says why."""
    from spanvisor.spans.data import SpanData

    root = SpanData(
        f"{9:032x}",
        f"{1:016x}",
        None,
        "run",
        1_000,
        2_000,
        {cv.TASK_NAME: "far future"},
        notes=("end time 18446744073709551615 ns is out of range: clamped",),
    )
    events = TaskTracker().span_ended(root)
    check_stream(events, all_finished=True)
    assert any("clamped" in n for n in events[-1].notes)
