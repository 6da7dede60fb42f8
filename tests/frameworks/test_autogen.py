"""AutoGen AgentChat 0.7 with its native OTel spans and OpenInference's
OpenAI instrumentation, offline: its OpenAIChatCompletionClient against a
local fake of OpenAI's API. AutoGen traces agents (``invoke_agent``,
``create_agent``) and tools (``execute_tool``) but no model call, so without
an OpenAI instrumentation a run shows no calls, tokens, context or cost:
the instrumentation is part of turning it on. autogen-core 0.7.5 requires
protobuf 5.29 (the suite has 7), so it runs in the ``otel-1.44`` venv
(tests/frameworks/_env.py, envs/autogen_scenario.py).

A triage AssistantAgent makes 3 model calls (2,000 → 8,800 input tokens on
gpt-4o), runs a tool and an expert agent as an ``AgentTool``; the failing
run fails on its second model call. Spans: ``invoke_agent triage`` over
``ChatCompletion`` LLM spans (OpenInference) and ``execute_tool`` spans; the
expert's ``invoke_agent expert`` sits in ``execute_tool expert``; each
agent's ``create_agent`` is a root of its own, ended before the run.
"""

from __future__ import annotations

import pytest

from ._env import Runs, run_scenario
from ._harness import Path, assert_shown_before_its_root, assert_the_scripted_run, one_task, param_paths, shown_live

pytestmark = pytest.mark.timeout_s(900)  # the first test may make the venv


@pytest.fixture(scope="module")
def runs() -> Runs:
    return run_scenario("otel-1.44", "autogen_scenario", ("ok", "fail"))


@param_paths()
def test_a_run_is_one_task_with_its_calls_tools_and_sub_agent(runs: Runs, path: Path) -> None:
    run = runs[path, "ok"]
    assert run.result == {"output": "Routed to the Siemens SME"}
    task = one_task(run.events)
    if path == "serve":
        assert_shown_before_its_root(task)
    assert task.finished.outcome == "complete"
    named = task.named
    if path == "stamped":
        # The task opens from a stamped child: the stamp names the agent, not
        # the title, which comes with the root at the run's end. The expert's
        # name is never the task's (it names a sub-agent).
        assert named == {(None, "triage", None), ("invoke_agent triage", "triage", "triage")}
    else:
        assert named == {("invoke_agent triage", "triage", "triage")}
    assert_the_scripted_run(task, ["lookup", "expert"])
    assert "invoke_agent triage" in run.console and "expert" in run.console


@param_paths()
def test_a_failing_run_is_a_failed_task_with_its_error(runs: Runs, path: Path) -> None:
    run = runs[path, "fail"]
    assert run.result["error_type"] == "BadRequestError"
    task = one_task(run.events)
    assert task.finished.outcome == "error"
    assert (task.finished.error_type or "").endswith("BadRequestError")
    assert "model backend down" in (task.finished.error_message or "")
    assert task.finished.task.agent_id == "triage"
    assert len(task.model_calls) == 1
    assert task.tools == ["lookup"]


def test_the_task_is_live_while_it_runs(runs: Runs) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    assert shown_live(runs["processor", "ok"].live), runs["processor", "ok"].live
