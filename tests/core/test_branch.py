"""The git branch a task's work is on (``agent.branch``, ``TaskView.branch``) and
its pull request (``agent.pull_request``):
read from the root alone, its latest word winning (an agent may switch
branches while it works); another span's says nothing of the task. The
receiver's live records carry it the same way (tests/cli/test_run_diff.py:
``spanvisor run`` says a switch as the session goes on)."""

from __future__ import annotations

from spanvisor.events import TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

from ._sdk import Agent


def test_the_roots_latest_branch_is_the_tasks(agent: Agent, memory: InMemorySink) -> None:
    start = {cv.TASK_NAME: "fix login", cv.TASK_ID: "B1", cv.REPO: "acme/api", cv.BRANCH: "main"}
    with agent.tracer.start_as_current_span("fix", attributes=start) as root:
        with agent.tracer.start_as_current_span("helper", attributes={cv.BRANCH: "someone-elses"}):
            pass
        assert agent.flush()  # the task is shown (on main) before the switch
        root.set_attribute(cv.BRANCH, "fix/login")  # the agent switched
    assert agent.flush()
    events = memory.for_task("B1")
    assert isinstance(events[0], TaskStarted) and events[0].task.branch == "main"
    assert isinstance(events[-1], TaskFinished) and events[-1].task.branch == "fix/login"
    assert all(e.task.branch != "someone-elses" for e in events)


def test_a_long_branch_is_clipped_as_every_name_is(agent: Agent, memory: InMemorySink) -> None:
    """Agent text like a repository's: clipped here, escaped by each sink."""
    with agent.tracer.start_as_current_span("fix", attributes={cv.TASK_ID: "B2", cv.BRANCH: "b" * 400}):
        pass
    assert agent.flush()
    shown = memory.for_task("B2")[-1].task.branch
    assert shown is not None and shown.startswith("bbb") and len(shown) <= 256


def test_the_roots_latest_pull_request_is_the_tasks(agent: Agent, memory: InMemorySink) -> None:
    """``agent.pull_request`` is read as the branch is: the root's latest word
    (a task may open a second one), another span's says nothing of the task."""
    first, second = "https://github.com/acme/api/pull/12", "https://github.com/acme/api/pull/13"
    with agent.tracer.start_as_current_span("fix", attributes={cv.TASK_ID: "P1", cv.BRANCH: "fix/login"}) as root:
        assert agent.flush()  # shown before it has one
        with agent.tracer.start_as_current_span("tool", attributes={cv.PULL_REQUEST: "https://evil.example/pull/1"}):
            pass
        root.set_attribute(cv.PULL_REQUEST, first)
        assert agent.flush()
        root.set_attribute(cv.PULL_REQUEST, second)
    assert agent.flush()
    events = memory.for_task("P1")
    assert events[0].task.pull_request is None
    assert [e.task.pull_request for e in events if e.task.pull_request][-1] == second
    assert all(e.task.pull_request in (None, first, second) for e in events)
