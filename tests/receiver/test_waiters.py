"""The click tests' cleanup (tests/receiver/waiters.py) against a stand-in
control API: it releases an agent whose request reached serve after the
test ended, and when none can be released it says what serve answered, not
that a thread "did not end"."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from waiters import Waiter, end_waiters

NOT_YET = (404, {"outcome": "denied", "code": "unknown_task", "reason": "no run of that task id"})
APPLIED = (200, {"outcome": "applied", "code": None, "reason": None})


class Agent:
    """A waiter's thread stand-in: it waits until a reject is applied to it."""

    def __init__(self, task_id: str) -> None:
        self.released = threading.Event()
        self.waiter = Waiter(task_id, "Apply?", 120.0)
        w = self.waiter

        def run() -> None:
            if self.released.wait(30):
                w.result.append("rejected")
            w.hold.wait(30)

        w.thread = threading.Thread(target=run, name=f"agent-{task_id}", daemon=True)
        w.thread.start()

    def end(self) -> None:
        self.released.set()
        self.waiter.hold.set()
        assert self.waiter.thread is not None
        self.waiter.thread.join(30)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    made: list[Agent] = []
    yield made
    for a in made:
        a.end()


def _serve(agent: Agent, answers: list[tuple[int, dict[str, Any]]]) -> tuple[list[str], Any]:
    """A control API giving ``answers`` in turn (the last one from then on);
    an applied reject releases the agent."""
    asked: list[str] = []

    def decide(task_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        assert body["action"] == "reject" and body["approval_id"] == "a1"
        asked.append(task_id)
        status, doc = answers[min(len(asked), len(answers)) - 1]
        if status == 200:
            agent.released.set()
        return status, doc

    return asked, decide


def test_a_request_that_reaches_serve_after_the_test_ended_is_rejected_once_it_has(agents: list[Agent]) -> None:
    agent = Agent("late")
    agents.append(agent)
    asked, decide = _serve(agent, [NOT_YET, NOT_YET, APPLIED])
    end_waiters([agent.waiter], decide, timeout=30)
    assert asked == ["late"] * 3
    assert agent.waiter.thread is not None and not agent.waiter.thread.is_alive()


def test_a_request_that_never_reached_serve_is_reported_with_serves_answer(agents: list[Agent]) -> None:
    agent = Agent("lost")
    agents.append(agent)
    asked, decide = _serve(agent, [NOT_YET])
    with pytest.raises(AssertionError) as failed:
        end_waiters([agent.waiter], decide, timeout=1)
    said = str(failed.value)
    assert "lost: no reject was applied" in said and "unknown_task" in said and "never reached serve" in said
    assert "did not end" not in said and len(asked) >= 2


def test_a_refusal_that_asking_again_cannot_change_is_reported_at_once(agents: list[Agent]) -> None:
    agent, other = Agent("bad"), Agent("fine")
    agents.extend([agent, other])
    refused = (400, {"outcome": "denied", "code": "bad_request", "reason": "approval_id is required"})
    asked, decide = _serve(agent, [refused])
    _, decide_other = _serve(other, [APPLIED])

    def both(task_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return (decide if task_id == "bad" else decide_other)(task_id, body)

    with pytest.raises(AssertionError) as failed:
        end_waiters([agent.waiter, other.waiter], both, timeout=30)
    assert "bad: the cleanup's reject was answered 400" in str(failed.value) and "bad_request" in str(failed.value)
    assert "fine" not in str(failed.value) and asked == ["bad"]
    assert other.waiter.thread is not None and not other.waiter.thread.is_alive()


def test_serve_gone_is_said_too(agents: list[Agent]) -> None:
    agent = Agent("gone")
    agents.append(agent)

    def decide(task_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(AssertionError, match=r"gone: no reject was applied .*URLError.*Connection refused"):
        end_waiters([agent.waiter], decide, timeout=1)
