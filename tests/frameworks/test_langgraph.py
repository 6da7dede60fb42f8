"""LangGraph with OpenLLMetry's and OpenInference's LangChain
instrumentations, offline on LangChain's fake chat model with tool calls.

A ReAct graph "triage" makes 3 model calls (2,000 → 8,800 input tokens on
gpt-4o) and 2 tool calls, one of which runs a second graph, "expert"; a
second run fails on its second model call. Both instrumentations give their
spans their keys only after they start (OpenLLMetry: the operation;
OpenInference: the span kind, at the span's end), so the processor sends
such traces to the tracker in end order.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from ._harness import (
    Path,
    Run,
    Switch,
    assert_shown_before_its_root,
    instrumented_run,
    live,
    need,
    one_task,
    param_paths,
    shown_live,
    spanvisor,
)
from .envs import _live

need("langgraph")
need("opentelemetry.instrumentation.langchain")
need("openinference.instrumentation.langchain")

from langchain_core.callbacks import BaseCallbackManager  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatResult  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.pregel import Pregel  # noqa: E402
from langgraph.types import Command  # noqa: E402
from openinference.instrumentation.langchain import LangChainInstrumentor  # noqa: E402
from opentelemetry.instrumentation.langchain import LangchainInstrumentor  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # moved to langchain.agents, which is not installed here
    from langgraph.prebuilt import create_react_agent


class FakeChat(FakeMessagesListChatModel):
    """LangChain's fake chat model, answering tool calls; fails at call ``fail_at``."""

    model_name: str = "gpt-4o"
    fail_at: int = -1

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if self.i == self.fail_at:
            raise RuntimeError("model backend down")
        return super()._generate(messages, stop, run_manager, **kw)


def ai(content: str = "", calls: tuple[tuple[str, dict[str, str]], ...] = (), t_in: int = 0) -> AIMessage:
    return AIMessage(
        content=content,
        tool_calls=[{"name": n, "args": a, "id": f"call-{n}"} for n, a in calls],
        usage_metadata={"input_tokens": t_in, "output_tokens": 80, "total_tokens": t_in + 80},
        response_metadata={"model_name": "gpt-4o"},
    )


_OPENLLMETRY = Switch()
_OPENLLMETRY_WRAPS: list[tuple[Any, str]] = [
    (BaseCallbackManager, "__init__"),
    (Pregel, "stream"),
    (Pregel, "astream"),
    (Command, "__init__"),
]


@tool
def lookup(code: str) -> str:
    """Look up a fault code."""
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


def graphs(fail: bool = False) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expert = create_react_agent(FakeChat(responses=[ai("a worn bearing", t_in=600)]), tools=[], name="expert")

        @tool
        def ask_expert(question: str) -> str:
            """Ask the expert."""
            return str(expert.invoke({"messages": [("user", question)]})["messages"][-1].content)

        model = FakeChat(
            responses=[
                ai(calls=(("lookup", {"code": "F47"}),), t_in=2_000),
                ai(calls=(("ask_expert", {"question": "why F47?"}),), t_in=5_000),
                ai("Routed to the Siemens SME", t_in=8_800),
            ],
            fail_at=1 if fail else -1,
        )
        return create_react_agent(model, tools=[lookup, ask_expert], name="triage")


def run_graph(fail: bool = False) -> None:
    graph = graphs(fail)
    if fail:
        with pytest.raises(RuntimeError, match="model backend down"):
            graph.invoke({"messages": [("user", "Diagnose fault F47")]})
    else:
        graph.invoke({"messages": [("user", "Diagnose fault F47")]})


@pytest.fixture
def openllmetry(path: Path) -> Iterator[Run]:
    with spanvisor(path, _OPENLLMETRY) as run:
        instrumentor = LangchainInstrumentor()
        # Its uninstrument leaves what it wrapped wrapped (its callback
        # handler stays on LangChain's callback manager): put them back.
        wrapped = [(owner, name, vars(owner)[name]) for owner, name in _OPENLLMETRY_WRAPS]
        instrumentor.instrument(tracer_provider=run.provider)
        try:
            yield run
        finally:
            instrumentor.uninstrument()
            for owner, name, original in wrapped:
                setattr(owner, name, original)


@pytest.fixture
def openinference(path: Path) -> Iterator[Run]:
    with instrumented_run(path, LangChainInstrumentor()) as run:
        yield run


def assert_graph_task(task: Any, name: str) -> None:
    """The graph's run as one complete task: its four model calls, their
    tokens and context warnings, both tools, priced."""
    v = task.finished.task
    assert task.finished.outcome == "complete"
    assert v.task_name == name
    assert len(task.model_calls) == 4
    assert v.input_tokens == 2_000 + 5_000 + 8_800 + 600
    assert v.model == "gpt-4o" and v.context_limit == 10_000
    assert task.warnings == [0.70, 0.85]
    assert task.tools == ["lookup", "ask_expert"]
    assert v.cost_usd > 0 and v.unpriced_calls == 0


def assert_failed_graph_task(task: Any) -> None:
    assert task.finished.outcome == "error"
    assert task.finished.error_type == "RuntimeError"
    assert task.finished.error_message == "model backend down"
    assert task.tools == ["lookup"]


@param_paths()
def test_openllmetry_a_graph_run_is_one_task(openllmetry: Run) -> None:
    run_graph()
    task = one_task(openllmetry.flush())
    if openllmetry.path == "serve":
        assert_shown_before_its_root(task)
    assert_graph_task(task, "invoke_agent triage")
    assert task.finished.task.agent_name == "triage"


@param_paths()
def test_openllmetry_a_failing_run_is_a_failed_task(openllmetry: Run) -> None:
    run_graph(fail=True)
    assert_failed_graph_task(one_task(openllmetry.flush()))


@param_paths()
def test_openinference_a_graph_run_is_one_task(openinference: Run) -> None:
    run_graph()
    # The graph run's CHAIN span is the task; its agent-node turns (AGENT
    # spans) and the expert's graph fold into it.
    task = one_task(openinference.flush())
    assert_graph_task(task, "triage")
    if openinference.path == "serve":
        assert_shown_before_its_root(task)


@param_paths()
def test_openinference_a_failing_run_is_a_failed_task(openinference: Run) -> None:
    run_graph(fail=True)
    assert_failed_graph_task(one_task(openinference.flush()))


@pytest.mark.parametrize("path", ["processor"])
def test_openllmetry_the_task_is_live_while_it_runs(openllmetry: Run) -> None:
    with live(openllmetry) as seen:
        run_graph()
    assert shown_live(seen), seen


@pytest.mark.xfail(
    strict=True,
    reason="the graph run is a CHAIN that is a task root only by its LangChain metadata, known at its end: "
    "in process the task shows when the run ends (behind a Collector its first calls show it provisionally)",
)
@pytest.mark.parametrize("path", ["processor"])
def test_openinference_the_task_is_live_while_it_runs(openinference: Run) -> None:
    with live(openinference) as seen:
        run_graph()
    assert shown_live(seen), seen
