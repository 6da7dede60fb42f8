"""Google ADK with its native OTel GenAI spans, offline on a scripted model,
in a venv of its own: ADK 2.x requires OpenTelemetry <= 1.44, so it runs
with spanvisor installed against that version (tests/frameworks/_env.py,
envs/otel-1.44.txt, scenario envs/google_adk_scenario.py).

A triage LlmAgent makes 3 model calls (2,000 → 8,800 input tokens on
gpt-4o), runs a tool and an expert agent as an AgentTool; the failing run
fails on its second model call. ADK's spans: ``invoke_workflow triage``
(naming no agent) over ``invoke_agent triage`` over ``generate_content
gpt-4o`` and ``execute_tool`` spans; the AgentTool's ``execute_tool
expert`` holds the expert's own ``invoke_workflow``/``invoke_agent`` pair.
"""

from __future__ import annotations

import pytest

from ._env import Runs, run_scenario
from ._harness import Path, assert_shown_before_its_root, assert_the_scripted_run, one_task, param_paths, shown_live

pytestmark = pytest.mark.timeout_s(900)  # the first test may make the venv


@pytest.fixture(scope="module")
def runs() -> Runs:
    return run_scenario("otel-1.44", "google_adk_scenario", ("ok", "fail"))


@param_paths()
def test_a_run_is_one_task_named_after_its_agent(runs: Runs, path: Path) -> None:
    run = runs[path, "ok"]
    assert run.result == {"output": "Routed to the Siemens SME"}
    task = one_task(run.events)
    if path == "serve":
        assert_shown_before_its_root(task)
    v = task.finished.task
    assert task.finished.outcome == "complete"
    assert v.task_name == "triage"  # the root's gen_ai.workflow.name
    assert v.agent_id == "triage" and v.agent_name == "triage"
    assert_the_scripted_run(task, ["lookup", "expert"])
    assert "triage" in run.console and "lookup" in run.console


@param_paths()
def test_the_sub_agent_never_names_the_task(runs: Runs, path: Path) -> None:
    """Once the root is known. Before it, a provisional task (spans handed
    over one by one, the sub-agent's ended first) may be titled after an
    agent its spans name, `expert — running`: the agent at work then
    (docs/reference/conventions.md, provisional tasks' limits)."""
    task = one_task(runs[path, "ok"].events)
    titles = {e.task.task_name for e in task.events if not e.task.provisional}
    assert not [t for t in titles if t and "expert" in t], titles


@param_paths()
def test_the_start_names_the_agent(runs: Runs, path: Path) -> None:
    task = one_task(runs[path, "ok"].events)
    if path == "serve" or task.started.task.provisional:
        # Unstamped, the task shows from its first calls, before its root
        # (docs/reference/conventions.md#provisional-tasks): the root names it at its
        # end. Always on serve; on the exporter when a pump read the first
        # calls before the root (the SDK hands them over one by one here).
        assert task.started.task.provisional
        assert task.named == {("triage", "triage", "triage")}
        return
    assert task.started.task.agent_id == "triage"
    # The root's gen_ai.workflow.name titles it; on ``stamped`` the task opens from a
    # stamped child (the stamp names the agent, not the title) and is titled at the root's end.
    assert task.started.task.task_name == (None if path == "stamped" else "triage")


@param_paths()
def test_a_failing_run_is_a_failed_task_with_its_error(runs: Runs, path: Path) -> None:
    run = runs[path, "fail"]
    assert run.result == {"error_type": "RuntimeError", "error_message": "model backend down"}
    task = one_task(run.events)
    assert task.finished.outcome == "error"
    assert task.finished.error_type == "RuntimeError"
    assert task.finished.error_message == "model backend down"
    assert task.finished.task.agent_id == "triage"
    assert len(task.model_calls) == 1
    assert task.tools == ["lookup"]


def test_the_task_is_live_while_it_runs(runs: Runs) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    assert shown_live(runs["processor", "ok"].live), runs["processor", "ok"].live
