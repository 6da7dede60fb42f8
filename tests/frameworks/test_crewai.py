"""CrewAI with OpenInference's CrewAI and OpenAI instrumentations (as teams
run it), offline: CrewAI's native OpenAI LLM against a local fake of
OpenAI's API. CrewAI 1.15 requires mcp < 2 (the suite has 2.3), so it runs
in a venv of its own, ``crewai`` (tests/frameworks/_env.py,
envs/crewai_scenario.py).

A crew "fault desk" whose triage agent makes 3 model calls (2,000 → 8,800
input tokens on gpt-4o), runs a tool and delegates to the expert agent
(CrewAI's "Delegate work to coworker" tool); the failing run's model fails
from its second call on (CrewAI retries the step, then raises). Spans:
``fault desk.kickoff`` (CHAIN, the crew) over ``triage._execute_core``
(AGENT, ``graph.node.id`` = the agent's role, no ``agent.name``) over
``ChatCompletion`` LLM spans (the OpenAI instrumentation) and
``{tool}.run`` TOOL spans; the expert's call sits in the delegation tool.
"""

from __future__ import annotations

import pytest

from ._env import Runs, paths_failing, run_scenario
from ._harness import Path, assert_shown_before_its_root, assert_the_scripted_run, one_task, param_paths, shown_live

pytestmark = pytest.mark.timeout_s(900)  # the first test may make the venv


@pytest.fixture(scope="module")
def runs() -> Runs:
    return run_scenario("crewai", "crewai_scenario", ("ok", "fail"))


@param_paths()
def test_a_run_is_one_task_with_its_calls_tools_and_delegation(runs: Runs, path: Path) -> None:
    run = runs[path, "ok"]
    assert run.result == {"output": "Routed to the Siemens SME"}
    task = one_task(run.events)
    if path == "serve":
        assert_shown_before_its_root(task)
    assert task.finished.outcome == "complete"
    assert_the_scripted_run(task, ["lookup", "Delegate work to coworker"])


@paths_failing(
    "stamped: the agent's processor stamps the trace from `fault desk.kickoff` (CHAIN, no agent key at start) "
    "and the receiver's TaskStarted and context warnings name no task and the service as the agent "
    "(task_name None, agent_id 'frameworks-test-service'); only TaskFinished says 'triage'",
    "stamped",
)
def test_the_task_is_named_after_its_agent(runs: Runs, path: Path) -> None:
    task = one_task(runs[path, "ok"].events)
    # The agent's role, never the wrapped method (`triage._execute_core`)
    # nor the service name.
    assert task.named == {("triage", "triage", "triage")}


@param_paths()
def test_a_failing_run_is_a_failed_task_with_its_error(runs: Runs, path: Path) -> None:
    run = runs[path, "fail"]
    assert run.result["error_type"] == "BadRequestError"
    task = one_task(run.events)
    assert task.finished.outcome == "error"
    assert "model backend down" in (task.finished.error_message or "")
    assert task.tools == ["lookup"]
    assert task.finished.task.input_tokens == 2_000


def test_the_task_is_live_while_it_runs(runs: Runs) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    assert shown_live(runs["processor", "ok"].live), runs["processor", "ok"].live
