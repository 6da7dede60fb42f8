"""Where a framework has no agent span, and the conventions that moved on,
read the same on every path (the frameworks harness: in process, end order,
``serve`` unstamped and ``serve`` fed by a stamping agent).

Synthetic spans, with the attributes the instrumentations emit
(``openinference.span.kind``, ``llm.token_count.*``, ``llm.model_name``,
``graph.node.id``, the GenAI keys): LlamaIndex's agent workflow is CHAIN
spans only; CrewAI's run is a kickoff CHAIN over AGENT spans named after a
method; the current GenAI names are read beside the old ones
(``spans/current.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import Status, StatusCode, Tracer

from spanvisor.events import Checkpoint, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.spans import current as now
from spanvisor.tracking.prices import Pricer

from ..frameworks._harness import SERVICE, Path, Run, param_paths, spanvisor, tasks

OI = cv.OI_KIND


def llm(tracer: Tracer, name: str, t_in: int, t_out: int = 50) -> None:
    attrs = {OI: "LLM", cv.OI_MODEL: "gpt-4o", cv.OI_PROMPT: t_in, cv.OI_COMPLETION: t_out, cv.OI_TOTAL: t_in + t_out}
    with tracer.start_as_current_span(name, attributes=attrs):
        pass


def tool(tracer: Tracer, name: str, tool_name: str) -> None:
    with tracer.start_as_current_span(name, attributes={OI: "TOOL", cv.OI_TOOL_NAME: tool_name}):
        pass


def test_a_title_is_never_a_method_path() -> None:
    for raw, want in (
        ("FunctionAgent.run", "FunctionAgent"),
        ("triage.diagnose._execute_core", "triage.diagnose"),
        ("Crew_4f1.kickoff", "Crew_4f1"),
        ("triage.run", "triage"),
        ("invoke_agent triage", "invoke_agent triage"),
        ("triage.workflow", "triage.workflow"),
        ("run", "run"),
    ):
        assert now.title(raw) == want, raw
    assert cv.task_name({OI: "AGENT"}, "triage._execute_core") == "triage"


def llamaindex_run(tracer: Tracer, model_calls: bool = True) -> None:
    """LlamaIndex 0.14 + OpenInference: a FunctionAgent's run, CHAINs only."""
    with tracer.start_as_current_span("FunctionAgent.run", attributes={OI: "CHAIN"}):
        with tracer.start_as_current_span("BaseWorkflowAgent.init_run", attributes={OI: "CHAIN"}):
            pass
        with tracer.start_as_current_span("BaseWorkflowAgent.run_agent_step", attributes={OI: "CHAIN"}):
            if model_calls:
                llm(tracer, "OpenAI.astream_chat", 2_000)
        with tracer.start_as_current_span("BaseWorkflowAgent.call_tool", attributes={OI: "CHAIN"}):
            tool(tracer, "FunctionTool.acall", "lookup")
        with tracer.start_as_current_span("BaseWorkflowAgent.run_agent_step", attributes={OI: "CHAIN"}):
            if model_calls:
                llm(tracer, "OpenAI.astream_chat", 7_500)


@param_paths()
def test_a_chain_run_with_model_calls_is_the_task(path: Path) -> None:
    with spanvisor(path) as run:
        llamaindex_run(run.provider.get_tracer("llama_index"))
        (task,) = tasks(run.flush())
    v = task.finished.task
    assert (v.task_name, v.agent_id) == ("FunctionAgent", SERVICE)
    assert len(task.model_calls) == 2 and v.input_tokens == 9_500
    assert task.tools == ["lookup"]
    assert task.finished.outcome == "complete"


@param_paths()
def test_a_chain_run_without_model_calls_is_no_task(path: Path) -> None:
    with spanvisor(path) as run:
        llamaindex_run(run.provider.get_tracer("llama_index"), model_calls=False)
        assert tasks(run.flush()) == []


def crewai_run(tracer: Tracer, fail: bool = False) -> None:
    """CrewAI + OpenInference: the kickoff CHAIN over the crew task's AGENT
    span (named after its method), naming its agent only as a graph node."""
    with tracer.start_as_current_span("Crew_4f1.kickoff", attributes={OI: "CHAIN"}) as kickoff:
        kickoff.set_attribute("crew_key", "k1")
        with tracer.start_as_current_span("triage.diagnose._execute_core", attributes={OI: "AGENT"}) as agent:
            agent.set_attribute(now.OI_GRAPH_NODE, "triage")
            llm(tracer, "OpenAI.chat", 2_000)
            tool(tracer, "lookup._run", "lookup")
            llm(tracer, "OpenAI.chat", 7_600)
            if fail:
                agent.set_status(Status(StatusCode.ERROR, "agent gave up"))


@param_paths()
def test_a_crew_task_is_titled_by_its_task_and_run_by_its_role(path: Path) -> None:
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("crewai")
        crewai_run(tracer)
        crewai_run(tracer, fail=True)
        ok, failed = tasks(run.flush())
    for task in (ok, failed):
        v = task.finished.task
        assert (v.task_name, v.agent_id, v.agent_name) == ("triage.diagnose", "triage", "triage")
        assert len(task.model_calls) == 2 and task.tools == ["lookup"]
    assert ok.finished.outcome == "complete"
    assert failed.finished.outcome == "error" and failed.finished.error_message == "agent gave up"


@param_paths()
def test_a_wrapper_is_known_once_its_root_comes_and_history_stays(path: Path) -> None:
    """The root names no agent; its nested agent does. On the stamped path
    the task opens from a child, before the root: the title the nested agent
    gives is a new fact, and the events before it keep what they showed."""
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("shape")
        with tracer.start_as_current_span("Agent workflow", attributes={OI: "AGENT"}):
            llm(tracer, "generation", 2_000)
            with tracer.start_as_current_span("triage", attributes={OI: "AGENT"}) as agent:
                llm(tracer, "generation", 3_000)
                agent.set_attribute(cv.AGENT_NAME, "triage")
                agent.set_status(Status(StatusCode.ERROR, "Error in agent run: boom"))
        (task,) = tasks(run.flush())
    titles = [e.task.task_name for e in task.events]
    assert titles[-1] == "triage" and task.finished.task.agent_id == "triage"
    assert task.finished.outcome == "error" and task.finished.error_message == "Error in agent run: boom"
    # Once named, the task keeps the name: no event goes back to an older one.
    first = titles.index("triage")
    assert all(t == "triage" for t in titles[first:])


@param_paths()
def test_a_root_that_names_its_agent_is_no_wrapper_on_any_path(path: Path) -> None:
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("shape")
        with tracer.start_as_current_span("invoke_agent planner", attributes={OI: "AGENT"}) as root:
            with tracer.start_as_current_span("helper", attributes={OI: "AGENT", cv.AGENT_NAME: "helper"}) as h:
                llm(tracer, "chat", 1_000)
                h.set_status(Status(StatusCode.ERROR, "handled"))
            root.set_attribute(cv.AGENT_NAME, "planner")  # named only at its end
        (task,) = tasks(run.flush())
    v = task.finished.task
    assert (v.task_name, v.agent_id) == ("invoke_agent planner", "planner")
    assert task.finished.outcome == "complete"


@param_paths()
def test_the_main_agent_names_the_task_over_a_sub_agent(path: Path) -> None:
    """Google ADK's shape: a workflow naming no agent over the main agent,
    whose tool runs a sub-agent that ends first."""
    op = cv.GEN_AI_OPERATION
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("adk")
        with tracer.start_as_current_span("invoke_workflow triage", attributes={op: "invoke_workflow"}):
            main = {op: "invoke_agent", cv.GEN_AI_AGENT_NAME: "triage", now.GEN_AI_MAIN_AGENT: True}
            with tracer.start_as_current_span("invoke_agent triage", attributes=main):
                with tracer.start_as_current_span("execute_tool expert", attributes={op: "execute_tool"}):
                    sub = {op: "invoke_agent", cv.GEN_AI_AGENT_NAME: "expert"}
                    with tracer.start_as_current_span("invoke_agent expert", attributes=sub):
                        pass
        (task,) = tasks(run.flush())
    v = task.finished.task
    assert (v.task_name, v.agent_id) == ("invoke_agent triage", "triage")


@param_paths()
def test_a_conversation_turn_is_a_task_and_internal_invocations_fold_in(path: Path) -> None:
    op = cv.GEN_AI_OPERATION
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("genai")
        turn = {op: now.OP_CONVERSATION_TURN, cv.GEN_AI_AGENT_NAME: "support"}
        with tracer.start_as_current_span("handle_conversation_turn support", attributes=turn):
            inner = {op: "invoke_agent", now.INVOCATION_INTERNAL: True, cv.GEN_AI_AGENT_NAME: "lookup_agent"}
            with tracer.start_as_current_span("invoke_agent lookup_agent", attributes=inner):
                with tracer.start_as_current_span("chat gpt-4o", attributes=_chat(1_000)):
                    pass
        (task,) = tasks(run.flush())
    v = task.finished.task
    assert (v.task_name, v.agent_id) == ("handle_conversation_turn support", "support")
    assert v.input_tokens == 1_000
    assert cv.is_agent_span({now.INVOCATION_INTERNAL: True})


def _chat(t_in: int, **more: Any) -> dict[str, Any]:
    return {
        cv.GEN_AI_OPERATION: "chat",
        cv.GEN_AI_REQUEST_MODEL: "gpt-4o",
        cv.GEN_AI_PROVIDER: "openai",
        cv.GEN_AI_INPUT: t_in,
        cv.GEN_AI_OUTPUT: 10,
        **more,
    }


def test_cache_write_tokens_read_under_either_name() -> None:
    old = {**_chat(10_000), cv.GEN_AI_CACHE_WRITE: 8_000}
    new = {**_chat(10_000), now.GEN_AI_CACHE_WRITE_NEW: 8_000}
    assert cv.cache_usage(old) == (None, 8_000) == cv.cache_usage(new)
    assert cv.cache_usage({**new, cv.GEN_AI_CACHE_WRITE: 1}) == (None, 8_000)  # the current name first
    pricer = Pricer({})
    plain = pricer.price(_chat(10_000), "claude-sonnet-4-5", 10_000, 10, 0).usd
    a = pricer.price(old, "claude-sonnet-4-5", 10_000, 10, 0).usd
    b = pricer.price(new, "claude-sonnet-4-5", 10_000, 10, 0).usd
    assert a is not None and plain is not None and a == b and a != plain


@param_paths()
def test_an_a2a_task_state_on_the_root_is_the_tasks(path: Path) -> None:
    op = cv.GEN_AI_OPERATION
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("a2a")
        with tracer.start_as_current_span("invoke_agent remote", attributes={op: "invoke_agent"}) as root:
            root.set_attribute(now.A2A_TASK_STATE, "TASK_STATE_FAILED")
        with tracer.start_as_current_span("invoke_agent caller", attributes={op: "invoke_agent"}):
            with tracer.start_as_current_span("a2a.client", attributes={op: "execute_tool"}) as call:
                call.set_attribute(now.A2A_TASK_STATE, "failed")  # the remote task's, not this one's
        failed, fine = tasks(run.flush())
    assert failed.finished.outcome == "error"
    assert fine.finished.outcome == "complete"
    assert now.a2a_status({now.A2A_TASK_STATE: "input-required"}) == "waiting"
    assert now.a2a_status({now.A2A_TASK_STATE: "TASK_STATE_CANCELED"}) == "cancelled"
    assert now.a2a_status({now.A2A_TASK_STATE: "sideways"}) is None


@param_paths()
def test_an_mcp_tool_call_is_a_step(path: Path) -> None:
    op = cv.GEN_AI_OPERATION
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("mcp")
        with tracer.start_as_current_span("invoke_agent triage", attributes={op: "invoke_agent"}):
            # As the MCP conventions make them: an execute_tool span named
            # {mcp.method.name} {target}, its tool named only there.
            mcp = {op: "execute_tool", now.MCP_METHOD: "tools/call"}
            with tracer.start_as_current_span("tools/call get_weather", attributes=mcp):
                pass
            if path in ("processor", "stamped"):
                # With no GenAI key it reaches the tracker in process and stamped
                # (the unstamped paths keep only spans with a known key).
                with tracer.start_as_current_span("tools/call get_time", attributes={now.MCP_METHOD: "tools/call"}):
                    pass
            with tracer.start_as_current_span("tools/list", attributes={now.MCP_METHOD: "tools/list"}):
                pass
        (task,) = tasks(run.flush())
    want = ["get_weather", "get_time"] if path in ("processor", "stamped") else ["get_weather"]
    assert task.tools == want


def _exception(run: Run, tracer: Tracer, stamped_child: bool) -> list[Any]:
    """An agent that records its failure as an ``exception`` log record (the
    span event's replacement), in its root's context or a child's naming the root."""
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import LoggerProvider

    from spanvisor.otel.logs import SpanvisorLogProcessor

    logs = LoggerProvider()
    logs.add_log_record_processor(SpanvisorLogProcessor(run._owner))  # type: ignore[arg-type]
    logger = logs.get_logger("agent")
    with tracer.start_as_current_span("invoke_agent triage", attributes={cv.GEN_AI_OPERATION: "invoke_agent"}) as root:
        with tracer.start_as_current_span("chat gpt-4o", attributes=_chat(1_000)) as child:
            attrs: dict[str, Any] = {"exception.type": "RuntimeError", "exception.message": "backend down"}
            if stamped_child:
                attrs[cv.TASK_ROOT] = format(root.get_span_context().span_id, "016x")
            ctx = child.get_span_context() if stamped_child else root.get_span_context()
            record = LogRecord(
                trace_id=ctx.trace_id,
                span_id=ctx.span_id,
                trace_flags=ctx.trace_flags,
                event_name=cv.EVENT_EXCEPTION,
                attributes=attrs,
            )
            logger.emit(record)
        # Said by the root itself, the exception beats the root's status message.
        root.set_status(Status(StatusCode.ERROR, None if stamped_child else "run failed"))
    return run.flush()


@pytest.mark.parametrize("stamped_child", [False, True])
def test_an_exception_log_record_is_the_tasks_error_in_process(stamped_child: bool) -> None:
    with spanvisor("processor") as run:
        events = _exception(run, run.provider.get_tracer("logs"), stamped_child)
    (task,) = tasks(events)
    assert task.finished.outcome == "error"
    # The root's own exception is the reason; a child's is one when the root says nothing.
    assert (task.finished.error_type, task.finished.error_message) == ("RuntimeError", "backend down")


def test_an_exception_record_of_no_open_task_is_ignored() -> None:
    from spanvisor.spans.live import LiveFact
    from spanvisor.tracking.tracker import TaskTracker

    tracker = TaskTracker()
    fact = LiveFact("a" * 32, "b" * 16, cv.EVENT_EXCEPTION, 1, {"exception.message": "x"})
    assert tracker.live([fact]) == []
    assert not [e for e in tracker.expire() if isinstance(e, (Checkpoint, TaskFinished))]


@param_paths()
def test_the_agent_is_its_name_not_a_per_object_id(path: Path) -> None:
    """Semantic Kernel makes ``gen_ai.agent.id`` a uuid per agent object:
    the name names the agent, on every path (conventions.agent_id)."""
    attrs = {
        cv.GEN_AI_OPERATION: "invoke_agent",
        cv.GEN_AI_AGENT_ID: "5f0c8a4e-0d1b-4c59-9d3e-1f2a3b4c5d6e",
        cv.GEN_AI_AGENT_NAME: "triage",
    }
    with spanvisor(path) as run:
        tracer = run.provider.get_tracer("sk")
        with tracer.start_as_current_span("invoke_agent triage", attributes=attrs):
            with tracer.start_as_current_span("chat gpt-4o", attributes=_chat(1_000)):
                pass
        (task,) = tasks(run.flush())
    assert {e.task.agent_id for e in task.events} == {"triage"}
    # (Stamped, the task opens from a child whose stamp holds the agent's id only.)
    assert task.finished.task.agent_name == "triage"


def test_an_exception_log_record_reaches_the_live_channel_and_the_tail() -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    from spanvisor.receiver.logs import decode_logs

    req = ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add()
    rec.trace_id, rec.span_id, rec.time_unix_nano = b"\x01" * 16, b"\x02" * 8, 5
    rec.event_name = cv.EVENT_EXCEPTION
    rec.attributes.append(KeyValue(key="exception.message", value=AnyValue(string_value="backend down")))
    out = decode_logs(req, heard_ns=10)
    [fact] = out.live
    assert (fact.name, fact.root_span_id, fact.attributes["exception.message"]) == (
        "exception",
        "02" * 8,
        "backend down",
    )
    assert len(out.records) == 1 and out.live_request is not None


def test_a_run_whose_root_never_arrives_is_finished_failed_by_its_failed_step() -> None:
    """smolagents' failing run behind an unstamped exporter: its AGENT root
    never ends, so it never arrives; its spans wait for it. When the trace
    is forgotten (PENDING_TTL_S), the failed ``Step`` and the model calls
    under the missing root make a failed task, saying why."""
    from spanvisor.spans.data import SpanData
    from spanvisor.tracking.tracebuffer import PENDING_TTL_S
    from spanvisor.tracking.tracker import TaskTracker

    clock = [0.0]
    tracker = TaskTracker(clock=lambda: clock[0])
    trace, root = "ab" * 16, "01" * 8
    service = {"service.name": SERVICE}

    def span(sid: str, parent: str, name: str, attrs: dict[str, Any], t: int, error: bool = False) -> SpanData:
        return SpanData(trace, sid * 8, parent, name, t, t + 10, attrs, error=error, resource=service)

    llm_attrs = {OI: "LLM", cv.OI_MODEL: "gpt-4o", cv.OI_PROMPT: 2_000, cv.OI_COMPLETION: 80}
    ended = [
        span("02", "03" * 8, "OpenAIModel.generate", llm_attrs, 100),
        span("04", "03" * 8, "lookup", {OI: "TOOL", cv.OI_TOOL_NAME: "lookup"}, 120),
        span("03", root, "Step 1", {OI: "CHAIN"}, 90),
        span("05", "06" * 8, "OpenAIModel.generate", {OI: "LLM", cv.OI_MODEL: "gpt-4o"}, 200, error=True),
        span("06", root, "Step 2", {OI: "CHAIN"}, 190, error=True),
    ]
    events = [e for s in ended for e in tracker.span_ended(s)]
    assert events == [] and tracker.expire() == []
    clock[0] = PENDING_TTL_S + 1
    (task,) = tasks(tracker.expire())
    assert task.finished.outcome == "error" and task.finished.task.agent_id == SERVICE
    assert len(task.model_calls) == 1 and task.tools == ["lookup"]
    assert any("root span never arrived" in n for n in task.finished.notes)
    # A trace whose spans failed nothing is forgotten as before.
    quiet = TaskTracker(clock=lambda: clock[0])
    clock[0] = 0.0
    for s in ended[:3]:
        quiet.span_ended(s)
    clock[0] = PENDING_TTL_S + 1
    assert quiet.expire() == []
