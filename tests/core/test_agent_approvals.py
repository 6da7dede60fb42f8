"""The agent side of interventions, in-process, with the real OTel SDK: an
agent thread blocked in ``request_approval`` is released by a decision
recorded through the pipeline's Control; cancel is seen by
``cancel_requested``, ``raise_if_cancelled`` and ``on_cancel``."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest

from spanvisor.agent import ApprovalDecision, CancelRequested, TaskHandle, task
from spanvisor.control import hub
from spanvisor.events import Checkpoint, Decision, HumanIntervention, TaskFinished
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

from ._sdk import Agent


def decide(action: str, task_id: str, approval_id: str | None = None, actor: str = "alice", **kw: Any) -> Any:
    control = hub.current()
    assert control is not None, "the pipeline sets itself as this process's Control"
    d = Decision(
        uuid.uuid4().hex, task_id, action, actor, time.time_ns(), approval_id=approval_id, actor_name=actor, **kw
    )  # type: ignore[arg-type]
    return asyncio.run(control.decide(d))


class Asking:
    """An agent on its own thread that asks one question inside a task."""

    def __init__(self, agent: Agent, timeout: float = 60.0, **task_kw: Any) -> None:
        self.handle: TaskHandle | None = None
        self.result: ApprovalDecision | None = None
        self.asked = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(agent, timeout, task_kw), daemon=True)
        self.thread.start()

    def _run(self, agent: Agent, timeout: float, task_kw: dict[str, Any]) -> None:
        with task("deploy", agent_id="rivet", tracer=agent.tracer, **task_kw) as t:
            self.handle = t
            self.asked.set()
            self.result = t.request_approval("Apply the fix to prod?", timeout=timeout)
            t.checkpoint("after the answer", progress=90)

    def join(self) -> ApprovalDecision:
        self.thread.join(60)
        assert not self.thread.is_alive() and self.result is not None
        return self.result


def statuses(memory: InMemorySink, task_id: str) -> list[str]:
    return [e.task.status for e in memory.for_task(task_id) if not isinstance(e, HumanIntervention) or e.known]


def awaiting(memory: InMemorySink, task_id: str) -> bool:
    return any(e.task.status == "awaiting_approval" for e in memory.for_task(task_id))


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_a_decision_on_the_pipeline_releases_the_waiting_agent(live: tuple[Agent, InMemorySink], action: str) -> None:
    agent, memory = live
    asking = Asking(agent)
    assert asking.asked.wait(10) and asking.handle is not None
    task_id = asking.handle.task_id
    # The request reaches the tracker while the root is still open (a child span).
    wait_until(lambda: agent.flush() and awaiting(memory, task_id), what="awaiting_approval")
    verdict = decide(action, task_id, "a1", comment="looks <fine>")
    assert verdict.outcome == "applied", verdict
    result = asking.join()
    assert result.outcome == action and result.approved is (action == "approve")
    assert result.by == "alice" and result.comment == "looks <fine>" and result.approval_id == "a1"
    assert agent.flush()
    seen = statuses(memory, task_id)
    assert "awaiting_approval" in seen
    after = seen[seen.index("awaiting_approval") + 1 :]
    assert after and after[0] == "working", seen
    assert isinstance(memory.for_task(task_id)[-1], TaskFinished)
    # A second click on the same approval is refused with who was first.
    again = decide("approve", task_id, "a1", actor="bob")
    assert again.outcome == "already_decided" and "alice" in (again.reason or "")


def test_no_answer_within_the_timeout_is_timed_out_and_the_task_goes_on(live: tuple[Agent, InMemorySink]) -> None:
    agent, memory = live
    asking = Asking(agent, timeout=0.5)
    result = asking.join()
    assert result.outcome == "timed_out" and not result.approved and result.by is None
    assert agent.flush()
    assert asking.handle is not None
    task_id = asking.handle.task_id
    seen = statuses(memory, task_id)
    assert "awaiting_approval" in seen, seen
    assert seen[-1] == "complete"
    # The agent's own note of the timeout closed the request.
    closing = [
        e for e in memory.for_task(task_id) if isinstance(e, Checkpoint) and e.task.status != "awaiting_approval"
    ]
    assert closing and not closing[-1].task.approvals


def test_an_explicit_task_id_and_approval_id_are_what_the_decision_names(live: tuple[Agent, InMemorySink]) -> None:
    agent, memory = live
    task_id = f"deploy-{uuid.uuid4().hex[:8]}"
    asking_done: list[ApprovalDecision] = []

    def run() -> None:
        with task("deploy", agent_id="rivet", task_id=task_id, tracer=agent.tracer) as t:
            asking_done.append(t.request_approval("Ship?", approval_id="ship-it", timeout=60))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    wait_until(lambda: agent.flush() and awaiting(memory, task_id), what="awaiting_approval")
    assert decide("approve", task_id, "ship-it").outcome == "applied"
    th.join(30)
    assert asking_done and asking_done[0].approved


def test_the_async_form_is_released_the_same_way(live: tuple[Agent, InMemorySink]) -> None:
    agent, memory = live
    handle: list[TaskHandle] = []
    out: list[ApprovalDecision] = []

    async def main() -> None:
        async with task("async deploy", agent_id="rivet", tracer=agent.tracer) as t:
            handle.append(t)
            out.append(await t.request_approval_async("Go?", timeout=60))

    th = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    th.start()
    wait_until(lambda: handle and agent.flush() and awaiting(memory, handle[0].task_id), what="awaiting_approval")
    assert decide("reject", handle[0].task_id, "a1").outcome == "applied"
    th.join(30)
    assert out and out[0].outcome == "reject"


def test_cancel_is_seen_by_cancel_requested_raise_if_cancelled_and_on_cancel(
    live: tuple[Agent, InMemorySink],
) -> None:
    agent, memory = live
    called = threading.Event()
    calls: list[int] = []
    handle: list[TaskHandle] = []
    stop = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            with task("long job", agent_id="rivet", tracer=agent.tracer) as t:
                handle.append(t)

                def boom() -> None:
                    calls.append(1)
                    called.set()
                    raise ValueError("a callback's error never reaches the agent")

                t.on_cancel(boom)
                assert not t.cancel_requested
                while not stop.is_set():
                    t.raise_if_cancelled()
                    time.sleep(0.02)
        except CancelRequested as exc:
            raised.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    wait_until(lambda: handle, what="the task to start")
    task_id = handle[0].task_id
    wait_until(lambda: agent.flush() and memory.for_task(task_id), what="the task to be tracked")
    assert decide("cancel", task_id, actor="carol").outcome == "applied"
    assert called.wait(20), "on_cancel was called"
    th.join(20)
    stop.set()
    assert raised and "carol" in str(raised[0])
    assert calls == [1]
    assert agent.flush()
    final = _last_of_task(memory, task_id)
    assert isinstance(final, TaskFinished) and final.task.status == "cancelled"
    assert any(isinstance(e, HumanIntervention) and e.decision.action == "cancel" for e in memory.for_task(task_id))


def test_with_nothing_to_answer_a_request_times_out_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.delenv("SPANVISOR_CONTROL_URL", raising=False)
    # Another test's pipeline may still be registered in this process: this
    # one is about a process with none.
    monkeypatch.setattr(hub, "_current", [])
    tracer = TracerProvider().get_tracer("bare")
    with task("alone", tracer=tracer) as t:
        result = t.request_approval("Anyone?", timeout=30)
        assert not t.cancel_requested
    assert result.outcome == "timed_out"


def _last_of_task(memory: InMemorySink, task_id: str) -> Any:
    """The task's last event but a refusal: a refused decision (a late
    reject) is recorded when it is refused, which may be before or after the
    task's end reaches the sink."""
    return [e for e in memory.for_task(task_id) if not (isinstance(e, HumanIntervention) and e.outcome == "denied")][-1]


def _final_status(agent: Agent, memory: InMemorySink, task_id: str) -> str:
    assert agent.flush()
    final = _last_of_task(memory, task_id)
    assert isinstance(final, TaskFinished), final
    return final.task.status


def test_a_cancel_ends_the_wait_at_once_and_the_task_ends_cancelled(live: tuple[Agent, InMemorySink]) -> None:
    """`spanvisor cancel` while the agent waits: request_approval returns
    ``cancelled`` (not after its 900 s), nothing it returns permits an
    action, a later reject changes nothing, and the task never ends complete."""
    agent, memory = live
    asking = Asking(agent, timeout=900)
    assert asking.asked.wait(10) and asking.handle is not None
    task_id = asking.handle.task_id
    wait_until(lambda: agent.flush() and awaiting(memory, task_id), what="awaiting_approval")
    assert decide("cancel", task_id, actor="carol", comment="wrong target").outcome == "applied"
    result = asking.join()  # within the join's 60 s, not the request's 900 s
    assert result.outcome == "cancelled" and not result.approved and result.by == "carol"
    assert result.approval_id == "a1" and result.comment == "wrong target"
    assert not result.permits(None)
    decide("reject", task_id, "a1", actor="bob")
    assert _final_status(agent, memory, task_id) == "cancelled"


def test_an_approval_asked_after_a_cancel_returns_cancelled_at_once(live: tuple[Agent, InMemorySink]) -> None:
    agent, memory = live
    handle: list[TaskHandle] = []
    out: list[ApprovalDecision] = []
    go = threading.Event()

    async def main() -> None:
        async with task("async deploy", agent_id="rivet", tracer=agent.tracer) as t:
            handle.append(t)
            t.on_cancel(go.set)
            await asyncio.to_thread(go.wait, 30)
            out.append(await t.request_approval_async("Go?", timeout=900))

    th = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    th.start()
    wait_until(lambda: handle and agent.flush() and memory.for_task(handle[0].task_id), what="the task")
    assert decide("cancel", handle[0].task_id, actor="carol").outcome == "applied"
    th.join(30)
    assert not th.is_alive() and out and out[0].outcome == "cancelled" and out[0].by == "carol"
    assert _final_status(agent, memory, handle[0].task_id) == "cancelled"
