"""Provisional tasks on the pure TaskTracker, by example: the shapes the
rules were written for (docs/reference/conventions.md#provisional-tasks). The
properties over random trees are ``test_provisional_properties``'s."""

from __future__ import annotations

import itertools
from typing import Any

from spanvisor.events import Checkpoint, Event, TaskCorrected, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import LiveFact
from spanvisor.tracking.settings import StallSettings, TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream
from ._trees import FakeClock, SpanSpec, feed_start_order, stamp_trees

TRACE = "0" * 31 + "1"
SVC = {"service.name": "svc"}
_n = itertools.count(1)


def span(parent: SpanSpec | None, name: str, start: int, end: int, attrs: dict[str, Any] | None = None) -> SpanSpec:
    s = SpanSpec(TRACE, f"{next(_n):016x}", parent.span_id if parent else None, name, start, end)
    s.start_attrs = dict(attrs or {})
    s.resource = SVC
    return s


def chat(parent: SpanSpec, start: int, tokens: int) -> SpanSpec:
    s = span(parent, "chat gpt-4o", start, start + 50, {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"})
    s.updates = [(s.end_ns, {cv.GEN_AI_INPUT: tokens, cv.GEN_AI_OUTPUT: 10})]
    return s


def tool(parent: SpanSpec, start: int) -> SpanSpec:
    return span(
        parent,
        "execute_tool lookup",
        start,
        start + 20,
        {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "lookup"},
    )


def agent(name: str, start: int, end: int, parent: SpanSpec | None = None, **more: Any) -> SpanSpec:
    return span(
        parent,
        f"invoke_agent {name}",
        start,
        end,
        {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: name, **more},
    )


def deliver(tracker: TaskTracker, batches: list[list[SpanSpec]]) -> list[list[Event]]:
    """Each batch as one delivery, settled as the pipeline settles it."""
    out = []
    for batch in batches:
        evs: list[Event] = []
        for s in batch:
            evs += tracker.span_ended(s.data(None, stamped=False))
        out.append(evs + tracker.settle())
    return out


def test_a_genai_agent_shows_from_its_first_call_and_tool_under_its_roots_ids() -> None:
    root = agent("planner", 1_000, 9_000)
    c1, t1, c2 = chat(root, 1_100, 100), tool(root, 1_200), chat(root, 1_300, 300)
    tracker = TaskTracker(clock=FakeClock())
    first, second, third, last = deliver(tracker, [[c1], [t1], [c2], [root]])
    assert first == []  # one model call alone: not yet an agent run
    started = second[0]
    assert isinstance(started, TaskStarted) and started.task.provisional
    assert (started.task.task_name, started.task.agent_id) == ("svc — running", "svc")
    assert [e.task.input_tokens for e in second if isinstance(e, Checkpoint) and e.source == "model_call"] == [100]
    end = last[-1]
    assert isinstance(end, TaskFinished) and not end.task.provisional
    assert (end.task.task_name, end.task.agent_id, end.task.input_tokens) == ("invoke_agent planner", "planner", 400)
    events = [*second, *third, *last]
    check_stream(events, all_finished=True)
    # The root was where it hung: the root-first ids, start, calls and end alike.
    root_first = feed_start_order(TaskTracker(), stamped([root, c1, t1, c2]))
    ids = {e.event_id for e in root_first if not (isinstance(e, Checkpoint) and e.source == "state")}
    assert {e.event_id for e in events if not (isinstance(e, Checkpoint) and e.source == "state")} == ids
    assert tracker.stats.value("provisional_tasks_total", outcome="shown") == 1


def stamped(specs: list[SpanSpec]) -> list[SpanSpec]:
    stamp_trees(specs)
    return specs


def test_a_web_request_with_one_model_call_shows_nothing_and_is_held_back() -> None:
    top = span(None, "GET /summary", 1_000, 3_000, {"http.request.method": "GET"})
    call = chat(top, 1_100, 900)
    tracker = TaskTracker(clock=FakeClock())
    assert deliver(tracker, [[call], [top]]) == [[], []]
    assert tracker.stats.value("provisional_tasks_total", outcome="held_back") == 1
    assert tracker.open_tasks == 0


def test_a_graph_shows_under_its_run_once_its_first_node_ended() -> None:
    """LangGraph: the graph run (a CHAIN with LangChain metadata) over node
    CHAINs over the calls; a node ends right after its call."""
    run = span(
        None, "LangGraph", 1_000, 9_000, {cv.OI_KIND: "CHAIN", cv.OI_METADATA: '{"ls_integration": "langgraph"}'}
    )
    node = {cv.OI_KIND: "CHAIN", cv.OI_METADATA: '{"ls_integration": "langgraph", "langgraph_node": "agent"}'}
    n1 = span(run, "agent", 1_100, 1_500, node)
    n2 = span(run, "tools", 1_600, 1_900, node)
    c1, t1 = chat(n1, 1_200, 100), tool(n2, 1_700)
    tracker = TaskTracker(clock=FakeClock())
    batches = deliver(tracker, [[c1, n1], [t1], [n2], [run]])
    started = next(e for evs in batches for e in evs if isinstance(e, TaskStarted))
    assert started.task.root_span_id == run.span_id  # shown under the run: its ids
    end = batches[-1][-1]
    assert isinstance(end, TaskFinished) and end.task.task_name == "LangGraph"


def test_an_agent_span_that_runs_the_whole_task_keeps_the_id_it_was_shown_under() -> None:
    """The OpenAI Agents SDK: a nameless workflow over the triage agent's
    span, which runs until it hands off. The task shows under the triage
    span (the guess), never twice; its root names it as root-first does."""
    workflow = span(None, "Agent workflow", 1_000, 9_000, {cv.OI_KIND: "AGENT"})
    triage = span(workflow, "triage", 1_100, 4_000, {cv.OI_KIND: "AGENT", cv.AGENT_NAME: "triage"})
    expert = span(workflow, "expert", 4_100, 8_000, {cv.OI_KIND: "AGENT", cv.AGENT_NAME: "expert"})
    c1, t1, c2 = chat(triage, 1_200, 100), tool(triage, 1_300), chat(expert, 4_200, 500)
    tracker = TaskTracker(clock=FakeClock())
    events = [e for evs in deliver(tracker, [[c1, t1], [triage], [c2], [expert], [workflow]]) for e in evs]
    check_stream(events, all_finished=True)
    (started,) = [e for e in events if isinstance(e, TaskStarted)]
    assert started.task.root_span_id == triage.span_id
    end = events[-1]
    assert isinstance(end, TaskFinished)
    assert (end.task.task_name, end.task.agent_id, end.task.input_tokens) == ("triage", "triage", 600)
    root_first = feed_start_order(TaskTracker(), stamped([workflow, triage, expert, c1, t1, c2]))
    want = root_first[-1]
    assert isinstance(want, TaskFinished) and (want.task.task_name, want.task.agent_id) == ("triage", "triage")


def test_a_task_lost_before_its_root_came_takes_the_root_as_late() -> None:
    root = agent("planner", 1_000, 9_000)
    c1, t1 = chat(root, 1_100, 100), tool(root, 1_200)
    clock = FakeClock()
    tracker = TaskTracker(TrackerSettings(stalls=StallSettings(after_s=60.0, lost_after_s=120.0)), clock=clock)
    events = [e for evs in deliver(tracker, [[c1, t1]]) for e in evs]
    clock.advance(130.0)
    events += tracker.expire()
    assert isinstance(events[-1], TaskFinished) and events[-1].outcome == "lost"
    late = chat(root, 1_300, 300)
    after = [e for evs in deliver(tracker, [[late], [root]]) for e in evs]
    check_stream(events + after, all_finished=True)
    assert not [e for e in after if not isinstance(e, TaskCorrected)], "the task was opened or ended again"


def test_a_live_start_record_after_the_task_showed_names_it() -> None:
    root = agent("planner", 1_000, 9_000)
    c1, t1 = chat(root, 1_100, 100), tool(root, 1_200)
    tracker = TaskTracker(clock=FakeClock())
    deliver(tracker, [[c1, t1]])
    fact = LiveFact(
        TRACE, root.span_id, cv.LIVE_TASK_START, 1_000, {cv.TASK_NAME: "Plan the week", cv.AGENT_ID: "rivet"}, SVC
    )
    tracker.live([fact])  # its root speaks: its next view says what it said
    (named,) = [e for evs in deliver(tracker, [[chat(root, 1_400, 300)]]) for e in evs]
    assert not named.task.provisional
    assert (named.task.task_name, named.task.agent_id) == ("Plan the week", "rivet")
    # No provisional task for a trace its live channel speaks for: its records wait for its start.
    other = "0" * 31 + "2"
    waiting = LiveFact(other, "00000000000000ff", cv.LIVE_HEARTBEAT, 1_000, {}, SVC)
    assert tracker.live([waiting]) == []
    spans = [chat(root, 2_000, 1), tool(root, 2_100)]
    for s in spans:
        s.trace_id = other
        s.parent_id = "00000000000000ff"
    assert deliver(tracker, [spans]) == [[]]


def test_a_live_start_of_an_agent_span_the_ended_task_took_opens_nothing() -> None:
    # An agent span beside the model calls, under a plain top span: the task
    # hangs from the top span and takes the agent span as a member. Its live
    # start, behind the spans, would open a task whose root was read already.
    top = span(None, "handle_request", 1_000, 9_000)
    helper = span(top, "helper", 1_100, 1_200, {cv.TASK_NAME: "nested"})
    c1, t1 = chat(top, 1_100, 100), tool(top, 1_300)
    tracker = TaskTracker(clock=FakeClock())
    shown, ended = deliver(tracker, [[helper, c1, t1], [top]])
    assert isinstance(shown[0], TaskStarted) and shown[0].task.provisional
    assert isinstance(ended[-1], TaskFinished)
    start = LiveFact(TRACE, helper.span_id, cv.LIVE_TASK_START, 1_100, {cv.TASK_NAME: "nested"}, SVC)
    beat = LiveFact(TRACE, helper.span_id, cv.LIVE_HEARTBEAT, 1_150, {}, SVC)
    assert tracker.live([start, beat]) == []
    assert tracker.stats.value("live_records_total", outcome="late") == 2
    assert tracker.open_tasks == 0
    check_stream([*shown, *ended], all_finished=True)
