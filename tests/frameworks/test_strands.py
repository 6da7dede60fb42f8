"""Strands Agents with its native OTel GenAI spans, offline: its OpenAIModel
against a local fake of OpenAI's API. Strands 1.62 requires mcp < 2.2 (the
suite has 2.3), so it runs in the ``otel-1.44`` venv it shares with Google
ADK and AutoGen (tests/frameworks/_env.py, envs/strands_scenario.py).

A triage Agent makes 3 model calls (2,000 → 8,800 input tokens on gpt-4o),
runs a tool and an expert Agent inside a tool; the failing run fails on its
second model call. Strands' spans: ``invoke_agent triage``
(``gen_ai.agent.name``, and the run's token totals) over
``execute_event_loop_cycle`` spans holding ``chat`` (``gen_ai.usage.*``) and
``execute_tool {name}``; the expert's ``invoke_agent expert`` sits in the
tool that called it.
"""

from __future__ import annotations

import pytest

from ._env import Runs, run_scenario
from ._harness import Path, assert_shown_before_its_root, assert_the_scripted_run, one_task, param_paths, shown_live

pytestmark = pytest.mark.timeout_s(900)  # the first test may make the venv


@pytest.fixture(scope="module")
def runs() -> Runs:
    return run_scenario("otel-1.44", "strands_scenario", ("ok", "fail"))


@param_paths()
def test_a_run_is_one_task_with_its_calls_tools_and_sub_agent(runs: Runs, path: Path) -> None:
    run = runs[path, "ok"]
    assert run.result == {"output": "Routed to the Siemens SME"}
    task = one_task(run.events)
    if path == "serve":
        assert_shown_before_its_root(task)
    assert task.finished.outcome == "complete"
    assert task.named == {("invoke_agent triage", "triage", "triage")}
    # The agent spans' run totals are not counted again.
    assert_the_scripted_run(task, ["lookup", "ask_expert"])
    assert "invoke_agent triage" in run.console and "ask_expert" in run.console


@param_paths()
def test_a_failing_run_is_a_failed_task_with_its_error(runs: Runs, path: Path) -> None:
    run = runs[path, "fail"]
    assert run.result["error_type"] == "EventLoopException"
    task = one_task(run.events)
    assert task.finished.outcome == "error"
    assert (task.finished.error_type or "").endswith("EventLoopException")
    assert "model backend down" in (task.finished.error_message or "")
    assert task.finished.task.agent_id == "triage"
    assert len(task.model_calls) == 1
    assert task.tools == ["lookup"]


def test_the_task_is_live_while_it_runs(runs: Runs) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    assert shown_live(runs["processor", "ok"].live), runs["processor", "ok"].live
