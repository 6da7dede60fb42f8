"""smolagents with OpenInference's instrumentation, offline on smolagents'
own OpenAIModel over a scripted client (the instrumentor traces the model
classes smolagents ships, so a Model subclass of one's own would emit no LLM
span).

A triage ToolCallingAgent makes 3 model calls (2,000 → 8,800 input tokens on
gpt-4o), runs a tool and a managed agent (the expert, 1 call). Its AGENT
spans carry the run's token totals, which are not model calls. A failing run
never ends its AGENT span (docs/reference/frameworks.md): where its task is open (in
process, or stamped) the failed ``Step`` under that root finishes it as
failed once the run goes quiet.
"""

from __future__ import annotations

import contextvars
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
)
from .envs import _live

need("smolagents")
need("openinference.instrumentation.smolagents")

from openai.types.chat import ChatCompletion  # noqa: E402
from openinference.instrumentation.smolagents import SmolagentsInstrumentor  # noqa: E402
from smolagents import OpenAIModel, ToolCallingAgent, tool  # noqa: E402

from spanvisor.events import TaskFinished  # noqa: E402

Reply = tuple[str, dict[str, str], int]


class ScriptedClient:
    """What OpenAIModel calls (``client.chat.completions.create``), answering
    tool calls from a script; raises at call ``fail_at``."""

    def __init__(self, script: list[Reply], fail_at: int = -1) -> None:
        self.script = script
        self.fail_at = fail_at
        self.n = 0
        self.chat = self
        self.completions = self

    def create(self, **kwargs: Any) -> ChatCompletion:
        n, self.n = self.n, self.n + 1
        if n == self.fail_at:
            raise RuntimeError("model backend down")
        name, arguments, t_in = self.script[n]
        return ChatCompletion.model_validate(
            {
                "id": f"cc-{n}",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": f"call-{n}",
                                    "type": "function",
                                    "function": {"name": name, "arguments": _json(arguments)},
                                }
                            ],
                        },
                    }
                ],
                "usage": {"prompt_tokens": t_in, "completion_tokens": 80, "total_tokens": t_in + 80},
            }
        )


def _json(d: dict[str, str]) -> str:
    import json

    return json.dumps(d)


class ScriptedModel(OpenAIModel):
    def __init__(self, script: list[Reply], fail_at: int = -1) -> None:
        self._client = ScriptedClient(script, fail_at)
        super().__init__(model_id="gpt-4o", api_key="offline")

    def create_client(self) -> Any:
        return self._client


@tool
def lookup(code: str) -> str:
    """Look up a fault code.

    Args:
        code: the fault code
    """
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


def triage(fail: bool = False) -> ToolCallingAgent:
    expert = ToolCallingAgent(
        tools=[],
        model=ScriptedModel([("final_answer", {"answer": "a worn bearing"}, 600)]),
        name="expert",
        description="Explains faults.",
        max_steps=3,
        verbosity_level=0,
    )
    script: list[Reply] = [
        ("lookup", {"code": "F47"}, 2_000),
        ("expert", {"task": "why F47?"}, 5_000),
        ("final_answer", {"answer": "Routed to the Siemens SME"}, 8_800),
    ]
    return ToolCallingAgent(
        tools=[lookup],
        managed_agents=[expert],
        model=ScriptedModel(script, fail_at=1 if fail else -1),
        name="triage",
        max_steps=5,
        verbosity_level=0,
    )


_SWITCH = Switch()


@pytest.fixture
def instrumented(path: Path) -> Iterator[Run]:
    with instrumented_run(path, SmolagentsInstrumentor(), _SWITCH) as run:
        yield run


@param_paths()
def test_a_run_is_one_task_and_its_tokens_are_counted_once(instrumented: Run) -> None:
    assert triage().run("Diagnose fault F47") == "Routed to the Siemens SME"
    task = one_task(instrumented.flush())
    if instrumented.path == "serve":
        assert_shown_before_its_root(task)
    v = task.finished.task
    assert task.finished.outcome == "complete"
    assert v.task_name == "triage"  # its span `triage.run`, without the method
    assert len(task.model_calls) == 4
    # Not doubled by the AGENT spans' run totals.
    assert v.input_tokens == 2_000 + 5_000 + 8_800 + 600
    assert v.output_tokens == 4 * 80
    assert v.model == "gpt-4o" and v.context_limit == 10_000
    assert task.warnings == [0.70, 0.85]
    assert task.tools == ["lookup", "final_answer", "final_answer"]
    assert v.cost_usd > 0 and v.unpriced_calls == 0


@pytest.fixture
def quick(path: Path) -> Iterator[Run]:
    """As ``instrumented``, with a root hold and a stall time of a second:
    how long a task whose root never ends stays open after its failed step."""
    with instrumented_run(path, SmolagentsInstrumentor(), _SWITCH, root_hold_s=1.0, stall_after_s=1.0) as run:
        yield run


@param_paths()
def test_a_failing_run_is_finished_failed_by_its_failed_step(quick: Run) -> None:
    # It also leaves that span current in the caller's context: run it in a
    # copy, or every later span of this thread would become its child.
    with pytest.raises(Exception, match="model backend down"):
        contextvars.copy_context().run(triage(fail=True).run, "Diagnose fault F47")
    # smolagents leaves the run's AGENT span open; its `Step` CHAIN under it
    # ended ERROR. Once the task is quiet for its stall time it is finished
    # as failed, with the model's error and a note saying why. Unstamped, in
    # end order, the root never comes: its first spans showed the task
    # provisionally (docs/reference/conventions.md#provisional-tasks), and it ends the
    # same way, with no title (only the root has one).
    events = quick.until(lambda evs: any(isinstance(e, TaskFinished) for e in evs))
    task = one_task(events)
    assert task.finished.outcome == "error"
    assert "model backend down" in (task.finished.error_message or "")
    assert any("root span never ended" in n for n in task.finished.notes)
    assert task.finished.task.task_name == ("triage" if quick.path == "processor" else None)
    assert task.tools == ["lookup"]


@pytest.mark.parametrize("path", ["processor"])
def test_the_task_is_live_while_it_runs(instrumented: Run) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    with live(instrumented) as seen:
        triage().run("Diagnose fault F47")
    assert shown_live(seen), seen
