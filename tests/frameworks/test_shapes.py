"""Span shapes of the frameworks that are not in the matrix as whole runs
(docs/reference/frameworks.md says why), read through the conventions mapping."""

from __future__ import annotations

from opentelemetry.trace import Status, StatusCode

from spanvisor.events import Checkpoint
from spanvisor.spans import conventions as cv

from ._harness import Path, param_paths, spanvisor, tasks


def test_an_agent_span_with_run_totals_is_no_model_call() -> None:
    # smolagents + OpenInference: the AGENT span carries the run's totals.
    totals = {cv.OI_KIND: "AGENT", cv.OI_PROMPT: 13_800, cv.OI_COMPLETION: 280, cv.OI_TOTAL: 14_080}
    assert cv.role(totals) == "agent" and not cv.is_model_call(totals)
    for kind in ("CHAIN", "TOOL"):
        assert not cv.is_model_call({**totals, cv.OI_KIND: kind})
    # Pydantic AI's invoke_agent, OpenLLMetry's workflow and task spans.
    assert not cv.is_model_call({cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_INPUT: 5})
    assert not cv.is_model_call({cv.TL_KIND: "workflow", cv.TL_PROMPT_OLD: 5})
    # A call is still a call, in every convention.
    assert cv.is_model_call({cv.OI_KIND: "LLM", cv.OI_PROMPT: 5})
    assert cv.is_model_call({cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_INPUT: 5})
    assert cv.is_model_call({cv.GEN_AI_INPUT: 5})


def test_tool_spans_in_every_convention() -> None:
    assert cv.is_tool_call({cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "lookup"})
    assert cv.is_tool_call({cv.OI_KIND: "TOOL", cv.OI_TOOL_NAME: "lookup"})
    assert cv.is_tool_call({cv.TL_KIND: "tool", cv.TL_ENTITY: "lookup"})
    assert cv.tool_name({cv.OI_TOOL_NAME: "lookup"}, "SimpleTool") == "lookup"
    assert cv.tool_name({cv.OI_KIND: "TOOL"}, "handoff to expert") == "handoff to expert"
    assert not cv.is_tool_call({cv.OI_KIND: "LLM"})


def test_openllmetry_unknown_model_reads_langchains_name() -> None:
    a = {cv.GEN_AI_RESPONSE_MODEL: "unknown", cv.TL_LS_MODEL: "gpt-4o"}
    assert cv.model_name(a) == "gpt-4o"
    assert cv.model_name({cv.GEN_AI_RESPONSE_MODEL: "unknown"}) == "unknown"


@param_paths()
def test_a_wrapper_fails_with_its_last_named_agent_only(path: Path) -> None:
    """The raw shape of the Agents SDK's runs: a nameless AGENT root over named
    AGENT spans. An unnamed nested agent (a smolagents managed agent) that
    fails decides nothing."""
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("shape")
        agent = {cv.OI_KIND: "AGENT"}
        with tracer.start_as_current_span("Agent workflow", attributes=agent):
            with tracer.start_as_current_span("triage", attributes=agent) as first:
                first.set_attribute(cv.AGENT_NAME, "triage")
            with tracer.start_as_current_span("expert", attributes=agent) as last:
                last.set_attribute(cv.AGENT_NAME, "expert")
                last.set_status(Status(StatusCode.ERROR, "Error in agent run: boom"))
        with tracer.start_as_current_span("planner.run", attributes=agent):
            with tracer.start_as_current_span("helper.run", attributes=agent) as helper:
                helper.set_status(Status(StatusCode.ERROR, "handled"))
        failed, handled = tasks(run.flush())
    assert (failed.finished.task.task_name, failed.finished.task.agent_id) == ("triage", "triage")
    assert failed.finished.outcome == "error"
    assert failed.finished.error_message == "Error in agent run: boom"
    assert handled.finished.task.task_name == "planner"  # never a method path
    assert handled.finished.outcome == "complete"


def test_a_langgraph_run_is_an_agent_span_and_its_nodes_are_not() -> None:
    run = {cv.OI_KIND: "CHAIN", cv.OI_METADATA: '{"ls_integration": "langgraph"}'}
    node = {cv.OI_KIND: "CHAIN", cv.OI_METADATA: '{"ls_integration": "langgraph", "langgraph_node": "agent"}'}
    assert cv.is_agent_span(run) and cv.is_root_candidate(run)
    assert not cv.is_agent_span(node)
    assert not cv.is_agent_span({cv.OI_KIND: "CHAIN"})
    assert not cv.is_agent_span({cv.OI_KIND: "LLM", cv.OI_METADATA: '{"ls_integration": "langgraph"}'})
    assert not cv.is_agent_span({cv.OI_KIND: "CHAIN", cv.OI_METADATA: 7})


@param_paths()
def test_a_failed_tool_is_a_step_with_its_error(path: Path) -> None:
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("shape")
        with tracer.start_as_current_span("invoke_agent triage", attributes={cv.GEN_AI_OPERATION: "invoke_agent"}):
            tool = {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "fetch <sales>"}
            with tracer.start_as_current_span("execute_tool fetch", attributes=tool) as span:
                span.record_exception(TimeoutError("warehouse timeout"))
                span.set_status(Status(StatusCode.ERROR, "TimeoutError"))
        (task,) = tasks(run.flush())
        steps = [e for e in task.events if isinstance(e, Checkpoint) and e.source == "tool_call"]
        assert len(steps) == 1 and steps[0].changed == ()
        assert steps[0].attributes["tool"] == "fetch <sales>"
        assert steps[0].attributes["error"] == "warehouse timeout"
        assert isinstance(steps[0].attributes["duration_s"], float)
        assert task.finished.outcome == "complete"  # a failed tool the agent got past fails nothing
        assert "Tool failed: fetch <sales> (" in run.console.getvalue()
