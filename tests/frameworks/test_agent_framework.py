"""Microsoft Agent Framework with its native OTel GenAI spans, offline on a
scripted chat client built as its own clients are. It traces only to the
global tracer provider, which a test process must not take, so its
scenario runs through envs/_drive.py in a child of the suite's own Python
(no venv of its own: it installs alongside the suite's pins).

A triage Agent makes 3 model calls (2,000 → 8,800 input tokens on gpt-4o),
runs a tool and an expert Agent as a tool (``as_tool``); the failing run
fails on its second model call. Spans: ``invoke_agent triage``
(``gen_ai.agent.name``, and the run's token totals) over ``chat gpt-4o``
(``gen_ai.usage.*``) and ``execute_tool {name}``; the expert's
``invoke_agent expert`` sits in ``execute_tool expert``. (Semantic Kernel
1.45 requires pydantic < 2.14 and is not in the matrix; Agent Framework is
its successor.)
"""

from __future__ import annotations

import pytest

from ._env import Runs, run_scenario
from ._harness import (
    Path,
    assert_shown_before_its_root,
    assert_the_scripted_run,
    need,
    one_task,
    param_paths,
    shown_live,
)

need("agent_framework")


@pytest.fixture(scope="module")
def runs() -> Runs:
    return run_scenario(None, "agent_framework_scenario", ("ok", "fail"))


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
    assert_the_scripted_run(task, ["lookup", "expert"])
    assert "invoke_agent triage" in run.console and "expert" in run.console


@param_paths()
def test_a_failing_run_is_a_failed_task_with_its_error(runs: Runs, path: Path) -> None:
    run = runs[path, "fail"]
    assert run.result == {"error_type": "RuntimeError", "error_message": "model backend down"}
    task = one_task(run.events)
    assert task.finished.outcome == "error"
    assert task.finished.task.agent_id == "triage"
    assert len(task.model_calls) == 1
    assert task.tools == ["lookup"]


@param_paths()
def test_a_failing_run_names_its_error_type(runs: Runs, path: Path) -> None:
    # Without ENABLE_SENSITIVE_DATA the framework records no exception event and no status
    # description: the type is only in the OTel ``error.type`` attribute of the ERROR spans.
    assert one_task(runs[path, "fail"].events).finished.error_type == "RuntimeError"


def test_the_task_is_live_while_it_runs(runs: Runs) -> None:
    # In process, from inside the run's first tool call, after its first model call.
    assert shown_live(runs["processor", "ok"].live), runs["processor", "ok"].live
