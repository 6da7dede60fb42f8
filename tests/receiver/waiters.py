"""Agents that wait for a person's answer on their own threads, and the
cleanup that releases the ones a test left waiting.

The cleanup answers through the control API (a rejection, as a person
would). A reject sent before the agent's request reached ``serve`` is
refused (404: ``unknown_task`` or ``unknown_request``) and never applies to
the request when it comes, so the cleanup asks again until one is applied,
and when none is, it says what ``serve`` answered: that, not "the agent did
not end", is what went wrong (and a test that failed before its request
reached serve reports its own failure first).
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer
from tests.waiting import wait_until

from spanvisor.agent import task

# POST a decision for a task id: (HTTP status, the JSON answer).
Decide = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]

# Answers after which the agent is released (or about to be): applied, or
# its request already answered or closed (its own timeout, its run's end).
RELEASED_CODES = {"already_decided", "expired"}
# The request has not reached serve yet: asking again may find it.
NOT_YET_CODES = {"unknown_task", "unknown_request"}


@dataclass
class Waiter:
    """An agent's task on its own thread: it asks approval a1, then holds its
    task open until ``hold`` is set. It must end with its test (a thread left
    waiting would export spans, and draw from the global ``random``, during
    later tests): see :func:`end_waiters`."""

    task_id: str
    question: str
    timeout: float
    result: list[Any] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self, tracer: Tracer, timed: bool = False) -> Waiter:
        def run() -> None:
            with task("Deploy", agent_id="rivet", task_id=self.task_id, tracer=tracer) as t:
                started = time.monotonic()
                self.result.append(t.request_approval(self.question, timeout=self.timeout))
                if timed:
                    self.result.append(time.monotonic() - started)
                self.hold.wait(60)

        self.thread = threading.Thread(target=run, name=f"agent-{self.task_id}", daemon=True)
        self.thread.start()
        return self

    @property
    def waiting(self) -> bool:
        return not self.result and self.thread is not None and self.thread.is_alive()


def _reject(decide: Decide, w: Waiter, answers: list[str]) -> tuple[bool, str | None]:
    """One cleanup reject of ``w``'s a1: (settled, what went wrong). Settled
    once the agent is released or about to be, or when serve refused the
    reject for a reason that asking again cannot change."""
    if not w.waiting:
        return True, None
    try:
        status, doc = decide(w.task_id, {"action": "reject", "approval_id": "a1", "actor": "cleanup"})
    except (urllib.error.URLError, OSError) as exc:  # serve gone or busy: say so, and try again
        answers.append(f"{type(exc).__name__}: {exc}")
        return False, None
    answers.append(f"{status} {doc}")
    code = doc.get("code")
    if status == 200 or code in RELEASED_CODES:
        return True, None
    if code in NOT_YET_CODES:
        return False, None
    return True, f"the cleanup's reject was answered {status} {doc}"


def end_waiters(waiters: list[Waiter], decide: Decide, timeout: float = 30.0) -> None:
    """Release the agents still waiting (a rejection through ``decide``) and
    wait for every thread, all within ``timeout`` (a test past its deadline
    has a minute to unwind); fail saying what kept each from ending."""
    deadline = time.monotonic() + timeout
    answers: list[list[str]] = [[] for _ in waiters]
    settled: dict[int, str | None] = {}

    def all_settled() -> bool:
        for i, w in enumerate(waiters):
            if i not in settled:
                done, problem = _reject(decide, w, answers[i])
                if done:
                    settled[i] = problem
        return len(settled) == len(waiters)

    try:
        wait_until(all_settled, timeout, "the cleanup's rejects to be applied", every=0.25)
    except AssertionError:
        pass  # each waiter still unsettled is named below, with serve's last answer
    for w in waiters:
        w.hold.set()
    for i, w in enumerate(waiters):
        # Only a released agent can end: the others are reported at once.
        if w.thread is not None and i in settled and settled[i] is None:
            w.thread.join(max(1.0, deadline - time.monotonic()))
    problems = []
    for i, w in enumerate(waiters):
        if i not in settled:
            last = answers[i][-1] if answers[i] else "nothing"
            problems.append(
                f"{w.task_id}: no reject was applied in {timeout:g} s ({len(answers[i])} sent, the last answered "
                f"{last}): its request never reached serve"
            )
        elif settled[i] is not None:
            problems.append(f"{w.task_id}: {settled[i]}")
        elif w.thread is not None and w.thread.is_alive():
            problems.append(f"{w.task_id}: the agent did not end after its reject was applied")
    if problems:
        raise AssertionError("the cleanup could not end every agent:\n" + "\n".join(problems))
