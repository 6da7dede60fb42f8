"""Pydantic AI with its native OTel GenAI spans (``instrument``), offline on a FunctionModel.

A triage agent makes 3 model calls (2,000 → 8,800 input tokens on gpt-4o),
runs 2 tools, one of which delegates to an expert agent (Pydantic AI's
agent delegation); a second run fails on its second model call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from ._harness import (
    Path,
    Run,
    assert_shown_before_its_root,
    live,
    need,
    one_task,
    param_paths,
    shown_live,
    spanvisor,
    tasks,
)
from .envs import _live

need("pydantic_ai")

from pydantic_ai import Agent, RunContext  # noqa: E402
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402
from pydantic_ai.models.instrumented import InstrumentationSettings  # noqa: E402
from pydantic_ai.usage import RequestUsage  # noqa: E402

MAIN_INPUT = (2_000, 5_000, 8_800)


def agents(fail_at: int | None = None) -> Agent[None, str]:
    calls = {"n": 0}

    def main_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        i = calls["n"]
        calls["n"] += 1
        if i == fail_at:
            raise RuntimeError("model backend down")
        usage = RequestUsage(input_tokens=MAIN_INPUT[i], output_tokens=80)
        if i == 0:
            return ModelResponse(parts=[ToolCallPart("lookup", {"code": "F47"})], usage=usage)
        if i == 1:
            return ModelResponse(parts=[ToolCallPart("ask_expert", {"question": "why F47?"})], usage=usage)
        return ModelResponse(parts=[TextPart("Routed to the Siemens SME")], usage=usage)

    def expert_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("a worn bearing")], usage=RequestUsage(input_tokens=600, output_tokens=40))

    expert = Agent(FunctionModel(expert_model, model_name="gpt-4o"), name="expert")
    triage = Agent(FunctionModel(main_model, model_name="gpt-4o"), name="triage")

    @triage.tool_plain
    def lookup(code: str) -> str:
        _live.probe()  # mid-run: what spanvisor shows of the task so far
        return f"fault {code}: spindle vibration"

    @triage.tool
    async def ask_expert(ctx: RunContext[None], question: str) -> str:
        result = await expert.run(question, usage=ctx.usage)
        return result.output

    return triage


@pytest.fixture
def instrumented(path: Path) -> Iterator[Run]:
    with spanvisor(path) as run:
        # What the docs say: Agent.instrument_all() (with the provider to use).
        Agent.instrument_all(InstrumentationSettings(tracer_provider=run.provider))
        try:
            yield run
        finally:
            Agent.instrument_all(False)


def _run(agent: Agent[None, str]) -> Any:
    return asyncio.run(agent.run("Diagnose fault F47"))


@param_paths()
def test_a_run_is_one_task_with_its_calls_tools_and_sub_agent(instrumented: Run) -> None:
    assert _run(agents()).output == "Routed to the Siemens SME"
    task = one_task(instrumented.flush())
    if instrumented.path == "serve":
        assert_shown_before_its_root(task)
    v = task.finished.task
    assert task.finished.outcome == "complete"
    assert v.task_name == "invoke_agent triage"
    assert v.agent_id == "triage" and v.agent_name == "triage"
    # 3 calls of the triage agent and the expert's one, folded into the task.
    assert len(task.model_calls) == 4
    assert v.input_tokens == sum(MAIN_INPUT) + 600
    assert v.output_tokens == 3 * 80 + 40
    assert v.model == "gpt-4o" and v.context_limit == 10_000
    assert task.warnings == [0.70, 0.85]
    assert task.tools == ["lookup", "ask_expert"]
    # Priced: Pydantic AI puts its own price on each call (operation.cost).
    assert v.cost_usd > 0 and v.unpriced_calls == 0
    assert {cp.attributes["cost_source"] for cp in task.model_calls} == {"reported"}
    card = instrumented.console.getvalue()
    assert "invoke_agent triage" in card and "lookup" in card


@param_paths()
def test_a_failing_run_is_a_failed_task_with_its_error(instrumented: Run) -> None:
    with pytest.raises(RuntimeError, match="model backend down"):
        _run(agents(fail_at=1))
    task = one_task(instrumented.flush())
    assert task.finished.outcome == "error"
    assert task.finished.error_type == "RuntimeError"
    assert task.finished.error_message == "model backend down"
    assert (task.finished.stacktrace or "").startswith("Traceback")
    assert len(task.model_calls) == 1
    assert task.tools == ["lookup"]


@param_paths()
def test_two_runs_are_two_tasks(instrumented: Run) -> None:
    _run(agents())
    with pytest.raises(RuntimeError):
        _run(agents(fail_at=1))
    found = tasks(instrumented.flush())
    assert [t.finished.outcome for t in found] == ["complete", "error"]


@pytest.mark.parametrize("path", ["processor"])
def test_the_task_is_live_while_it_runs(instrumented: Run) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    with live(instrumented) as seen:
        _run(agents())
    assert shown_live(seen), seen
