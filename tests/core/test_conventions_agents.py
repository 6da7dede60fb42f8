"""Agents instrumented only with a standard convention, no ``agent.*`` key.

OTel GenAI (current and pre-1.28 names), OpenInference and OpenLLMetry,
each through the in-process processor and through the exporter: the task
lifecycle, token totals, context occupancy (the latest call's input +
output, never the running sum) and the 70 % / 85 % warnings for a model
with a known window; token counts but no warning for an unknown model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Tracer

from spanvisor.events import Checkpoint, ContextWarning, TaskFinished, TaskStarted
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.spans import conventions as cv
from spanvisor.spans import current
from spanvisor.testing import InMemorySink

from ._invariants import check_stream
from ._sdk import Agent, _config


@dataclass(frozen=True)
class Convention:
    name: str
    root_name: str
    root: dict[str, Any]
    call: dict[str, Any]  # set at the call's start; {model} is filled in
    usage: tuple[str, str]  # keys for input and output tokens, set at its end
    agent_id: str


CONVENTIONS = [
    Convention(
        "genai",
        "invoke_agent researcher",
        {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "researcher", cv.GEN_AI_AGENT_ID: "res-1"},
        {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_PROVIDER: "anthropic", cv.GEN_AI_REQUEST_MODEL: "{model}"},
        (cv.GEN_AI_INPUT, cv.GEN_AI_OUTPUT),
        "researcher",  # the name, stable, over an id a framework may make per object
    ),
    Convention(
        "genai-id-only",
        "invoke_agent",
        {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_ID: "res-1"},
        {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_PROVIDER: "anthropic", cv.GEN_AI_REQUEST_MODEL: "{model}"},
        (cv.GEN_AI_INPUT, cv.GEN_AI_OUTPUT),
        "res-1",
    ),
    Convention(
        "genai-pre-1.28",
        "invoke_agent researcher",
        {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "researcher"},
        {cv.GEN_AI_SYSTEM: "anthropic", cv.GEN_AI_REQUEST_MODEL: "{model}"},
        (cv.GEN_AI_PROMPT_OLD, cv.GEN_AI_COMPLETION_OLD),
        "researcher",
    ),
    Convention(
        "openinference",
        "Agent.run",
        {cv.OI_KIND: "AGENT", cv.AGENT_NAME: "oi-agent"},
        {cv.OI_KIND: "LLM", cv.OI_MODEL: "{model}", cv.OI_PROVIDER: "anthropic"},
        (cv.OI_PROMPT, cv.OI_COMPLETION),
        "oi-agent",
    ),
    Convention(
        "openllmetry",
        "researcher.agent",
        {cv.TL_KIND: "agent", cv.TL_ENTITY: "tl-agent"},
        {"llm.request.type": "chat", cv.GEN_AI_SYSTEM: "Anthropic", cv.GEN_AI_RESPONSE_MODEL: "{model}"},
        (cv.GEN_AI_PROMPT_OLD, cv.GEN_AI_COMPLETION_OLD),
        "tl-agent",
    ),
]

# (input, output) per call, window 200,000: 30.5 %, 71 % (warning),
# 87.5 % (critical), 10.5 % after compaction (re-arms both), 75.5 % (warning).
CALLS = [(60_000, 1_000), (140_000, 2_000), (172_000, 3_000), (20_000, 1_000), (150_000, 1_000)]
WARNINGS = [("warning", 0.70), ("critical", 0.85), ("warning", 0.70)]


def run_agent(tracer: Tracer, conv: Convention, model: str) -> None:
    with tracer.start_as_current_span(conv.root_name, attributes=conv.root):
        for t_in, t_out in CALLS:
            attrs = {k: (model if v == "{model}" else v) for k, v in conv.call.items()}
            with tracer.start_as_current_span(f"chat {model}", attributes=attrs) as call:
                call.set_attributes({conv.usage[0]: t_in, conv.usage[1]: t_out})
            with tracer.start_as_current_span("execute_tool search"):
                pass


@pytest.fixture(params=["processor", "exporter"])
def path(request: pytest.FixtureRequest) -> Iterator[tuple[Tracer, InMemorySink, Any]]:
    sink = InMemorySink()
    if request.param == "processor":
        agent = Agent([sink])
        yield agent.tracer, sink, agent.flush
        agent.close()
    else:
        exporter = SpanvisorSpanExporter(sinks=[sink], config=_config())
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        yield provider.get_tracer("agent"), sink, exporter.force_flush
        exporter.pipeline.shutdown(2.0)


@pytest.mark.parametrize("conv", CONVENTIONS, ids=lambda c: c.name)
def test_known_model_window(conv: Convention, path: tuple[Tracer, InMemorySink, Any]) -> None:
    tracer, sink, flush = path
    run_agent(tracer, conv, "claude-sonnet-4-20250514")
    assert flush()
    events = sink.events
    check_stream(events)
    assert isinstance(events[0], TaskStarted) and isinstance(events[-1], TaskFinished)
    assert len(sink.of_type(TaskStarted)) == 1
    done = events[-1]
    assert done.outcome == "complete"
    assert done.task.task_name == current.title(conv.root_name)  # a method path's title drops its method
    assert done.task.agent_id == conv.agent_id
    assert done.task.input_tokens == sum(c[0] for c in CALLS)
    assert done.task.output_tokens == sum(c[1] for c in CALLS)
    assert done.task.context_limit == 200_000
    assert done.task.model == "claude-sonnet-4-20250514"
    calls = [c for c in sink.of_type(Checkpoint) if c.source == "model_call"]
    assert [c.task.context_tokens for c in calls] == [a + b for a, b in CALLS]
    warnings = sink.of_type(ContextWarning)
    assert [(w.level, w.threshold) for w in warnings] == WARNINGS
    assert [w.tokens for w in warnings] == [142_000, 175_000, 151_000]
    assert len({w.event_id for w in warnings}) == 3


@pytest.mark.parametrize("conv", CONVENTIONS, ids=lambda c: c.name)
def test_unknown_model_counts_tokens_without_warnings(conv: Convention, path: tuple[Tracer, InMemorySink, Any]) -> None:
    tracer, sink, flush = path
    run_agent(tracer, conv, "acme-llm-7")
    assert flush()
    check_stream(sink.events)
    done = sink.of_type(TaskFinished)[0]
    assert done.task.context_limit is None and done.task.context_ratio is None
    assert done.task.context_tokens == sum(CALLS[-1])
    assert (done.task.input_tokens, done.task.output_tokens) == (sum(c[0] for c in CALLS), sum(c[1] for c in CALLS))
    assert not sink.of_type(ContextWarning)
    assert done.task.status == "complete"


def test_configured_window_overrides_the_table() -> None:
    sink = InMemorySink()
    agent = Agent(
        [sink], _config(SPANVISOR_MODEL_CONTEXT_WINDOWS="acme-llm=250000", SPANVISOR_CONTEXT_THRESHOLDS="0.5")
    )
    try:
        run_agent(agent.tracer, CONVENTIONS[0], "acme-llm-7")
        assert agent.flush()
        warnings = sink.of_type(ContextWarning)
        # 142k crosses 50 % of 250k, 175k stays above; 21k re-arms it, 151k crosses again.
        assert [(w.level, w.threshold, w.limit) for w in warnings] == [("warning", 0.5, 250_000)] * 2
    finally:
        agent.close()


def test_an_agent_whose_id_is_new_each_run_is_one_agent_by_its_name() -> None:
    """Semantic Kernel gives every agent object a new uuid as gen_ai.agent.id."""
    import uuid

    sink = InMemorySink()
    agent = Agent([sink])
    for _ in range(2):
        attrs = {
            cv.GEN_AI_OPERATION: "invoke_agent",
            cv.GEN_AI_AGENT_NAME: "triage",
            cv.GEN_AI_AGENT_ID: str(uuid.uuid4()),
        }
        with agent.tracer.start_as_current_span("invoke_agent triage", attributes=attrs):
            pass
    assert agent.flush()
    agent.close()
    assert [e.task.agent_id for e in sink.events if isinstance(e, TaskStarted)] == ["triage", "triage"]


def test_a_workflow_naming_no_agent_is_named_by_its_workflow_name() -> None:
    """Google ADK's root: ``invoke_workflow triage`` with only gen_ai.workflow.name."""
    sink = InMemorySink()
    agent = Agent([sink])
    root = {cv.GEN_AI_OPERATION: "invoke_workflow", current.GEN_AI_WORKFLOW_NAME: "triage"}
    with agent.tracer.start_as_current_span("invoke_workflow triage", attributes=root):
        sub = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "expert"}
        with agent.tracer.start_as_current_span("invoke_agent expert", attributes=sub):
            pass
    assert agent.flush()
    agent.close()
    check_stream(sink.events)
    assert {(e.task.task_name, e.task.agent_id) for e in sink.events} == {("triage", "triage")}


@pytest.mark.parametrize(("value", "shown"), [("TimeoutError", "TimeoutError"), ("_OTHER", None)])
def test_a_failed_root_with_only_error_type_is_typed_by_it(value: str, shown: str | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    sink = InMemorySink()
    agent = Agent([sink])
    attrs = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "triage", current.ERROR_TYPE: value}
    with agent.tracer.start_as_current_span("invoke_agent triage", attributes=attrs, record_exception=False) as span:
        span.set_status(Status(StatusCode.ERROR))
    assert agent.flush()
    agent.close()
    (done,) = sink.of_type(TaskFinished)
    assert done.outcome == "error" and done.error_type == shown


def test_a_root_that_names_its_agent_just_after_starting_is_live_from_its_first_child() -> None:
    """Strands and the Microsoft Agent Framework start the span, then set its keys."""
    sink = InMemorySink()
    agent = Agent([sink])
    try:
        with agent.tracer.start_as_current_span("invoke_agent triage") as root:
            root.set_attributes({cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "triage"})
            with agent.tracer.start_as_current_span("cycle"):
                calls = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
                with agent.tracer.start_as_current_span("chat gpt-4o", attributes=calls) as chat:
                    chat.set_attributes({"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10})
                assert agent.flush()
                # Mid-run: the task is open and the call, under a span still open, counted.
                assert [e.task.task_name for e in sink.of_type(TaskStarted)] == ["invoke_agent triage"]
                assert [c.source for c in sink.of_type(Checkpoint)] == ["model_call"]
                assert not sink.of_type(TaskFinished)
        assert agent.flush()
    finally:
        agent.close()
    check_stream(sink.events)
    (done,) = sink.of_type(TaskFinished)
    assert done.task.agent_id == "triage" and done.task.input_tokens == 100


def test_work_before_a_late_named_root_names_itself_is_kept() -> None:
    """A call that started, and one that ended, before the root got its keys
    still count once in the task that opens at a later child's start."""
    sink = InMemorySink()
    agent = Agent([sink])
    call = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
    usage = {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}
    try:
        with agent.tracer.start_as_current_span("invoke_agent triage") as root:
            with agent.tracer.start_as_current_span("chat gpt-4o", attributes=call) as early:
                early.set_attributes(usage)
            spanning = agent.tracer.start_span("chat gpt-4o", attributes=call)
            root.set_attributes({cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "triage"})
            with agent.tracer.start_as_current_span("chat gpt-4o", attributes=call) as late:
                late.set_attributes(usage)
            spanning.set_attributes(usage)
            spanning.end()
        assert agent.flush()
    finally:
        agent.close()
    check_stream(sink.events)
    assert len(sink.of_type(TaskStarted)) == 1
    (done,) = sink.of_type(TaskFinished)
    assert done.task.agent_id == "triage"
    assert [c.source for c in sink.of_type(Checkpoint)].count("model_call") == 3
    assert (done.task.input_tokens, done.task.output_tokens) == (300, 30)
