"""The OpenAI Agents SDK with OpenInference's instrumentation, offline on a scripted Model.

A triage agent makes 2 model calls and one tool call, then hands off to an
expert that makes 2 more (2,000 → 8,800 input tokens on gpt-4o); a second
run fails on its second model call. The SDK's spans: an "Agent workflow"
AGENT root naming no agent, then one AGENT span per agent that ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ._harness import (
    Path,
    Run,
    assert_shown_before_its_root,
    instrumented_run,
    live,
    need,
    one_task,
    param_paths,
    shown_live,
)
from .envs import _live

need("agents")
need("openinference.instrumentation.openai_agents")

from agents import Agent, Runner, function_tool  # noqa: E402
from agents.items import ModelResponse  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from agents.tracing import generation_span  # noqa: E402
from agents.usage import Usage  # noqa: E402
from openai.types.responses import (  # noqa: E402
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor  # noqa: E402

Step = tuple[list[Any] | Exception, int, int]


def message(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def call(name: str, arguments: str, call_id: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call", name=name, arguments=arguments, call_id=call_id, id=call_id, status="completed"
    )


class Scripted(Model):
    """A Model answering from a script; it traces its calls as a model
    provider does (a generation span with the model and usage)."""

    def __init__(self, script: list[Step]) -> None:
        self.script = list(script)

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        out, t_in, t_out = self.script.pop(0)
        with generation_span(model="gpt-4o", input=[], model_config={}) as span:
            if isinstance(out, Exception):
                raise out
            span.span_data.usage = {"input_tokens": t_in, "output_tokens": t_out}
            usage = Usage(requests=1, input_tokens=t_in, output_tokens=t_out, total_tokens=t_in + t_out)
            return ModelResponse(output=out, usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


@function_tool
def lookup(code: str) -> str:
    """Look up a fault code."""
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


def triage(fail: bool = False) -> Agent[Any]:
    expert = Agent(
        name="expert",
        instructions="Explain the fault.",
        tools=[lookup],
        model=Scripted(
            [([call("lookup", '{"code": "F47"}', "e1")], 5_000, 60), ([message("a worn bearing")], 8_800, 80)]
        ),
    )
    second: Step = (
        (RuntimeError("model backend down"), 0, 0) if fail else ([call("transfer_to_expert", "{}", "t2")], 3_000, 60)
    )
    return Agent(
        name="triage",
        instructions="Route the fault.",
        tools=[lookup],
        handoffs=[expert],
        model=Scripted([([call("lookup", '{"code": "F47"}', "t1")], 2_000, 60), second]),
    )


@pytest.fixture
def instrumented(path: Path) -> Iterator[Run]:
    with instrumented_run(path, OpenAIAgentsInstrumentor()) as run:
        yield run


@param_paths()
def test_a_run_is_one_task_named_after_its_agent(instrumented: Run) -> None:
    result = asyncio.run(Runner.run(triage(), "Diagnose fault F47"))
    assert result.final_output == "a worn bearing"
    task = one_task(instrumented.flush())
    if instrumented.path == "serve":
        assert_shown_before_its_root(task)
    v = task.finished.task
    assert task.finished.outcome == "complete"
    # The root says "Agent workflow" and names no agent: the first agent does.
    assert v.task_name == "triage"
    assert v.agent_id == "triage" and v.agent_name == "triage"
    # The handed-off agent never takes the card's name over.
    assert not [e for e in task.events if "expert" in (e.task.agent_id, e.task.agent_name, e.task.task_name)]
    assert len(task.model_calls) == 4
    assert v.input_tokens == 2_000 + 3_000 + 5_000 + 8_800
    assert v.model == "gpt-4o" and v.context_limit == 10_000
    assert task.warnings == [0.70, 0.85]
    # The handoff is a tool span of its own.
    assert task.tools == ["lookup", "handoff to expert", "lookup"]
    assert v.cost_usd > 0 and v.unpriced_calls == 0


@param_paths()
def test_a_failing_run_is_reported_failed(instrumented: Run) -> None:
    with pytest.raises(RuntimeError, match="model backend down"):
        asyncio.run(Runner.run(triage(fail=True), "Diagnose fault F47"))
    task = one_task(instrumented.flush())
    assert task.finished.outcome == "error"
    assert "model backend down" in (task.finished.error_message or "")
    assert task.finished.task.agent_id == "triage"
    assert task.tools == ["lookup"]


@pytest.mark.parametrize("path", ["processor"])
def test_the_task_is_live_while_it_runs(instrumented: Run) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    with live(instrumented) as seen:
        asyncio.run(Runner.run(triage(), "Diagnose fault F47"))
    assert shown_live(seen), seen
