"""The in-process order and the exporter/receiver order tell the same story.

The same spans fed in start order (span_started + poll + span_ended, as the
processor does, reading live roots with a pump lag) and in end order only
(span_ended, every span after its descendants, shuffled, in batches, with and
without the processor's stamps) must give the same event ids for span events
(agent.checkpoint, agent.artifact), model calls, TaskStarted and TaskFinished
(so sinks keyed on event ids stay idempotent whichever path delivered a task),
pass the one stream checker, and end every task on the same final view, field
by field. tests/core/test_paths_properties.py does the same through the real
SDK, exporter and receiver.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.events import ArtifactAdded, Checkpoint, ContextWarning, Event, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_against_specs, check_stream, final_states
from ._strategies import traces
from ._trees import FakeClock, SpanSpec, event, feed_end_order, feed_start_order, stamp_trees


def _span_caused(events: list[Event]) -> dict[str, Event]:
    """Events caused by a span event, a model call, a task start or a root end."""
    out: dict[str, Event] = {}
    for e in events:
        if (isinstance(e, Checkpoint) and e.source in ("event", "model_call")) or isinstance(
            e, ArtifactAdded | TaskStarted | TaskFinished
        ):
            out[e.event_id] = e
    return out


def _finished(events: list[Event]) -> dict[str, TaskFinished]:
    return {e.task_id: e for e in events if isinstance(e, TaskFinished)}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    specs=traces(root_parent=True, late_roots=True, clean_root_updates=True, skew=True, parallel=True), data=st.data()
)
def test_every_order_gives_the_same_ids_and_final_state(specs: list[SpanSpec], data: st.DataObject) -> None:
    """The processor's order (with polls and a pump lag), and end order with and
    without stamps, in random batches: same span-caused event ids, and the
    same final view of every task, field by field."""
    stamp_trees(specs)
    lo, hi = min(s.start_ns for s in specs), max(s.end_ns for s in specs)
    polls = sorted(data.draw(st.lists(st.integers(lo, hi), max_size=5), label="poll times"))
    lag = data.draw(st.sampled_from([0, 1, 1_000, 100_000]), label="pump lag")
    in_process = feed_start_order(TaskTracker(), specs, polls, lag=lag)
    check_stream(in_process)
    check_against_specs(in_process, specs)
    want = _span_caused(in_process)
    want_final = final_states(in_process)
    for stamped in (True, False):
        seed = data.draw(st.integers(0, 2**32), label=f"end order seed (stamped={stamped})")
        batch = data.draw(st.integers(1, 10), label="batch size")
        clock = FakeClock()
        exported = feed_end_order(TaskTracker(clock=clock), specs, random.Random(seed), stamped, clock, batch)
        check_stream(exported, all_finished=True)
        check_against_specs(exported, specs)
        assert sorted(_span_caused(exported)) == sorted(want), f"stamped={stamped}"
        got_final = final_states(exported)
        assert got_final.keys() == want_final.keys()
        for task_id, state in want_final.items():
            assert got_final[task_id] == state, (f"stamped={stamped}", task_id)


TRACE = "0" * 31 + "9"
ROOT = "00000000000000a0"


def _agent_task() -> list[SpanSpec]:
    """A root with live checkpoints, two model calls, a tool with an artifact."""
    root = SpanSpec(TRACE, ROOT, None, "Diagnose F47", 1_000, 100_000)
    root.start_attrs = {cv.TASK_NAME: "Diagnose F47", cv.AGENT_ID: "rivet", cv.REPO: "plant/ops"}
    root.updates = [(5_000, {cv.PROGRESS: 10, cv.STEP: "route"}), (60_000, {cv.PROGRESS: 70})]
    root.events = [
        event(cv.EVENT_CHECKPOINT, 20_000, {"message": "Routed to siemens SME", cv.PROGRESS: 30}),
        event(cv.EVENT_CHECKPOINT, 80_000, {"message": "Validating", cv.PROGRESS: 90}),
    ]
    m1 = SpanSpec(TRACE, "00000000000000a1", ROOT, "chat claude-sonnet-4", 10_000, 15_000)
    m1.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-20250514"}
    m1.updates = [(15_000, {cv.GEN_AI_INPUT: 120_000, cv.GEN_AI_OUTPUT: 3_000})]
    tool = SpanSpec(TRACE, "00000000000000a2", ROOT, "execute_tool write_report", 30_000, 40_000)
    tool.start_attrs = {cv.GEN_AI_OPERATION: "execute_tool"}
    tool.events = [
        event(cv.EVENT_ARTIFACT, 39_000, {cv.ARTIFACT_NAME: "report.md", cv.ARTIFACT_URI: "s3://r/report.md"})
    ]
    m2 = SpanSpec(TRACE, "00000000000000a3", tool.span_id, "chat claude-sonnet-4", 32_000, 38_000)
    m2.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-20250514"}
    m2.updates = [(38_000, {cv.GEN_AI_INPUT: 150_000, cv.GEN_AI_OUTPUT: 2_000})]
    specs = [root, m1, tool, m2]
    stamp_trees(specs)
    return specs


@pytest.mark.parametrize("stamped", [True, False])
@pytest.mark.parametrize("batch", [1, 2, 100])
def test_a_known_task_agrees_in_every_batching(stamped: bool, batch: int) -> None:
    specs = _agent_task()
    in_process = feed_start_order(TaskTracker(), specs, poll_times=range(0, 100_000, 7_000))
    want = _span_caused(in_process)
    kinds = sorted(type(e).__name__ + ("/" + e.source if isinstance(e, Checkpoint) else "") for e in want.values())
    assert kinds == [
        "ArtifactAdded",
        "Checkpoint/event",
        "Checkpoint/event",
        "Checkpoint/model_call",
        "Checkpoint/model_call",
        "TaskFinished",
        "TaskStarted",
    ]
    for seed in range(5):
        clock = FakeClock()
        exported = feed_end_order(TaskTracker(clock=clock), specs, random.Random(seed), stamped, clock, batch)
        assert sorted(_span_caused(exported)) == sorted(want)
        # The warning at 76 % is raised on both paths (its id counts crossings).
        assert [e.event_id for e in exported if isinstance(e, ContextWarning)] == [
            e.event_id for e in in_process if isinstance(e, ContextWarning)
        ]


def test_live_progress_reaches_the_stream_before_the_root_ends() -> None:
    specs = _agent_task()
    events = feed_start_order(TaskTracker(), specs, poll_times=[6_000, 21_000])
    root_end = next(i for i, e in enumerate(events) if isinstance(e, TaskFinished))
    live = [
        (e.source, e.task.progress) for e in events[:root_end] if isinstance(e, Checkpoint) and e.source != "model_call"
    ]
    assert live[:2] == [("state", 10), ("event", 30)]


def test_a_root_that_starts_above_a_threshold_warns_on_both_paths() -> None:
    root = SpanSpec(TRACE, ROOT, None, "resumed task", 1_000, 5_000)
    root.start_attrs = {cv.TASK_NAME: "resumed task", cv.CONTEXT_TOKENS: 160_000, cv.CONTEXT_LIMIT: 200_000}
    stamp_trees([root])
    in_process = feed_start_order(TaskTracker(), [root])
    exported = feed_end_order(TaskTracker(), [root], random.Random(0), stamped=False)
    assert [e.level for e in exported if isinstance(e, ContextWarning)] == ["warning"]
    assert [e.level for e in in_process if isinstance(e, ContextWarning)] == ["warning"]


def test_a_checkpoint_that_lowers_the_limit_warns() -> None:
    root = SpanSpec(TRACE, ROOT, None, "task", 1_000, 5_000)
    root.start_attrs = {cv.TASK_NAME: "task", cv.CONTEXT_TOKENS: 100_000, cv.CONTEXT_LIMIT: 1_000_000}
    root.events = [event(cv.EVENT_CHECKPOINT, 2_000, {cv.CONTEXT_LIMIT: 120_000})]
    stamp_trees([root])
    events = feed_start_order(TaskTracker(), [root], poll_times=[3_000])
    assert [e.level for e in events if isinstance(e, ContextWarning)] == ["warning"]


@pytest.mark.parametrize("stamped", [True, False])
def test_stamped_agent_root_keeps_its_span_name(stamped: bool) -> None:
    """A GenAI ``invoke_agent`` root has no agent.task.name: the task is named
    after the span. The processor stamps agent.task.id on the root itself, and
    conventions.task_name() then no longer sees an agent span, so the in-process
    path (and spans stamped upstream) lose the name the end-order path keeps."""
    root = SpanSpec(TRACE, ROOT, None, "invoke_agent researcher", 1_000, 5_000)
    root.start_attrs = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "researcher"}
    stamp_trees([root])
    unstamped = feed_end_order(TaskTracker(), [root], random.Random(0), stamped=False)
    assert unstamped[-1].task.task_name == "invoke_agent researcher"
    if stamped:
        events = feed_end_order(TaskTracker(), [root], random.Random(0), stamped=True)
    else:
        events = feed_start_order(TaskTracker(), [root])
    assert events[-1].task.task_name == "invoke_agent researcher"


def _both_paths(
    specs: list[SpanSpec], stamped: bool, polls: list[int] | None = None
) -> tuple[TaskFinished, TaskFinished]:
    stamp_trees(specs)
    in_process = feed_start_order(TaskTracker(), specs, polls or ())
    clock = FakeClock()
    exported = feed_end_order(TaskTracker(clock=clock), specs, random.Random(0), stamped, clock, batch=100)
    a, b = in_process[-1], exported[-1]
    assert isinstance(a, TaskFinished) and isinstance(b, TaskFinished)
    return a, b


def test_stamps_sanitize_identity_like_the_tracker() -> None:
    """Attribute values may be sequences or bytes. The processor stamps
    ``str(value)`` ("['a', 'b']", "b'...'"), the tracker reads the root's own
    value through sanitize ("a, b"): a task seen through a Collector (stamped
    children first) gets another agent id and name than in-process."""
    root = SpanSpec(TRACE, ROOT, None, "task", 1_000, 9_000)
    root.start_attrs = {cv.TASK_NAME: ["fix", "flaky test"], cv.AGENT_ID: b"rivet"}
    child = SpanSpec(TRACE, "00000000000000c1", ROOT, "tool", 2_000, 3_000)
    child.start_attrs = {"http.request.method": "GET"}
    a, b = _both_paths([root, child], stamped=True)
    assert (b.task.task_name, b.task.agent_id) == (a.task.task_name, a.task.agent_id) == ("fix, flaky test", "rivet")


def test_stamped_nested_root_does_not_rename_the_task() -> None:
    """A sub-agent span with its own agent.task.name and agent.id inside a task.
    On the stamped end-order path (processor upstream, Collector, serve) the
    first span to arrive opens the task, and TaskState.open reads identity from
    that span's own keys, which the stamp did not overwrite."""
    root = SpanSpec(TRACE, ROOT, None, "task", 1_000, 9_000)
    root.start_attrs = {cv.TASK_NAME: "Diagnose F47", cv.AGENT_ID: "rivet"}
    sub = SpanSpec(TRACE, "00000000000000c1", ROOT, "sub-agent", 2_000, 3_000)
    sub.start_attrs = {cv.TASK_NAME: "look up manual", cv.AGENT_ID: "librarian"}
    a, b = _both_paths([root, sub], stamped=True)
    assert (a.task.task_name, a.task.agent_id) == ("Diagnose F47", "rivet")
    assert (b.task.task_name, b.task.agent_id) == ("Diagnose F47", "rivet")


def test_error_details_agree_when_a_plain_span_fails() -> None:
    """A plain child span (no agent key) fails before the root fails without an
    exception event. In-process the child is stamped, so its status message
    becomes the task's error; unstamped (exporter without processor, receiver)
    the fast path keeps no data for it and the root's message is used."""
    root = SpanSpec(TRACE, ROOT, None, "task", 1_000, 9_000, error=True, status_message="task failed")
    root.start_attrs = {cv.TASK_NAME: "deploy"}
    http = SpanSpec(TRACE, "00000000000000c1", ROOT, "POST /deploy", 2_000, 3_000, error=True)
    http.status_message = "connection refused"
    http.start_attrs = {"http.request.method": "POST"}
    a, b = _both_paths([root, http], stamped=False)
    assert (a.outcome, a.error_message) == (b.outcome, b.error_message)


def test_context_occupancy_agrees_when_the_root_also_sets_it() -> None:
    """The root starts with agent.context.tokens; a model call later reports
    usage. In-process the attribute is read at start and the model call wins;
    in end order the root's attributes are read last and win."""
    root = SpanSpec(TRACE, ROOT, None, "task", 1_000, 9_000)
    root.start_attrs = {cv.TASK_NAME: "t", cv.CONTEXT_TOKENS: 1_000}
    call = SpanSpec(TRACE, "00000000000000c1", ROOT, "chat", 2_000, 3_000)
    call.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "claude-sonnet-4"}
    call.updates = [(3_000, {cv.GEN_AI_INPUT: 50_000, cv.GEN_AI_OUTPUT: 1_000})]
    for stamped in (True, False):
        a, b = _both_paths([root, call], stamped)
        assert a.task.context_tokens == b.task.context_tokens
