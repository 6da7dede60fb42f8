"""A budget set to stop, through a real pipeline in the agent's process (the
processor path, the real OTel SDK): reached, the task gets exactly one
cancel, recorded as a person's is (the run's shared record, a
``HumanIntervention`` to every sink) with the budget as who and why; the
agent reads it back (``cancel_requested``, ``request_approval`` answers
``cancelled``) and the task ends cancelled. A warn-only task never gets
one; a task someone cancelled first is left alone."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.id_generator import IdGenerator

from spanvisor.agent import task
from spanvisor.config import Config
from spanvisor.control import budgetstop, hub, runs
from spanvisor.display.readable import usd
from spanvisor.events import Decision, HumanIntervention, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

from ._sdk import Agent


class Ids(IdGenerator):
    def generate_span_id(self) -> int:
        return int.from_bytes(os.urandom(8)) or 1

    def generate_trace_id(self) -> int:
        return int.from_bytes(os.urandom(16)) or 1


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Agent, InMemorySink]]:
    memory = InMemorySink()
    data = tmp_path_factory.mktemp("budgetstop")
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(data)}, extra=()).with_values(shutdown_timeout_s=2.0)
    a = Agent([memory], config)
    # Ids not from ``random``, which hypothesis seeds alike for every example: each example is a new run.
    a.provider.id_generator = Ids()
    a.tracer = a.provider.get_tracer("budget-stop-agent")
    assert a.processor.pipeline.wait_ready(30)
    assert hub.current() is a.processor.pipeline.control, "a pipeline another test started is still running"
    try:
        yield a, memory
    finally:
        a.close()


def call(a: Agent, cents: int) -> None:
    """One model call of the current task, reporting its own cost."""
    attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "my-model"}
    with a.tracer.start_as_current_span("chat", attributes=attrs) as span:
        span.set_attributes({cv.GEN_AI_INPUT: 10, cv.GEN_AI_OUTPUT: 5, cv.GEN_AI_COST: cents / 100})


def cancels(memory: InMemorySink, task_id: str) -> list[HumanIntervention]:
    return [e for e in memory.of_type(HumanIntervention) if e.task_id == task_id and e.decision.action == "cancel"]


def record(a: Agent, task_id: str) -> Any:
    return asyncio.run(a.processor.pipeline.control.run(task_id))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    costs=st.lists(st.integers(0, 60), min_size=1, max_size=6),
    budget_cents=st.integers(1, 150),
    stop=st.booleans(),
)
def test_a_stop_budget_gets_one_cancel_at_the_first_call_that_reaches_it_and_a_warn_only_one_none(
    agent: tuple[Agent, InMemorySink], costs: list[int], budget_cents: int, stop: bool
) -> None:
    a, memory = agent
    tid = f"spend-{uuid.uuid4().hex[:8]}"
    attrs = {cv.TASK_ID: tid, cv.TASK_NAME: "spend", cv.AGENT_ID: "rivet", cv.BUDGET_USD: budget_cents / 100}
    running = [sum(costs[: i + 1]) for i in range(len(costs))]
    first = next((i for i, total in enumerate(running) if total >= budget_cents), None)
    with a.tracer.start_as_current_span("spend", attributes={**attrs, cv.BUDGET_STOP: stop}):
        for i, cents in enumerate(costs):
            call(a, cents)
            assert a.flush()
            if stop and i == first:  # recorded while the task runs, before any later call
                wait_until(lambda: cancels(memory, tid), 20, "the budget's cancel")
            if first is None or i < first or not stop:
                assert not cancels(memory, tid), (running, budget_cents, i)
    wait_until(lambda: a.flush() and [e for e in memory.of_type(TaskFinished) if e.task_id == tid], 20, "the end")
    assert a.flush()
    got = cancels(memory, tid)
    rec = record(a, tid)
    stops = [d for d in runs.decisions_of(rec) if d.action == "cancel"]
    if not stop or first is None:
        assert got == [] and stops == [], (stop, running, budget_cents)
        return
    [ev] = got
    assert ev.outcome == "applied"
    d = ev.decision
    assert (d.actor_id, d.actor_name, d.source) == (budgetstop.ACTOR_ID, "budget", "budget")
    assert d.comment == f"budget reached: {usd(running[first] / 100)} of {usd(budget_cents / 100)}"
    assert [s.intervention_id for s in stops] == [d.intervention_id]
    assert runs.cancel_of(stops) == {"by": "budget", "comment": d.comment, "time_ns": d.time_ns, "source": "budget"}


def test_the_agent_reads_the_budgets_cancel_back_and_ends_cancelled(agent: tuple[Agent, InMemorySink]) -> None:
    a, memory = agent
    tid = f"reader-{uuid.uuid4().hex[:8]}"
    budget = {cv.BUDGET_USD: 0.05, cv.BUDGET_STOP: True}
    with task("reader", agent_id="rivet", task_id=tid, tracer=a.tracer, **budget) as t:  # type: ignore[arg-type]
        call(a, 3)
        assert a.flush() and not t.cancel_requested
        call(a, 3)
        assert a.flush()
        wait_until(lambda: t.cancel_requested, 20, "the agent to read the budget's cancel")
        answer = t.request_approval("One more call?", timeout=5)
        assert answer.outcome == "cancelled" and answer.by == "budget", answer
    [end] = wait_until(lambda: a.flush() and [e for e in memory.of_type(TaskFinished) if e.task_id == tid], 20, "end")
    assert end.outcome == "cancelled", end
    assert len(cancels(memory, tid)) == 1


def test_a_task_a_person_cancelled_first_is_left_alone(agent: tuple[Agent, InMemorySink]) -> None:
    a, memory = agent
    tid = f"person-{uuid.uuid4().hex[:8]}"
    attrs = {cv.TASK_ID: tid, cv.TASK_NAME: "p", cv.AGENT_ID: "rivet", cv.BUDGET_USD: 0.05, cv.BUDGET_STOP: True}
    with a.tracer.start_as_current_span("p", attributes=attrs):
        call(a, 1)
        assert a.flush()
        control = a.processor.pipeline.control
        alice = Decision(uuid.uuid4().hex, tid, "cancel", "alice", time.time_ns(), actor_name="alice", comment="stop")
        assert asyncio.run(control.decide(alice)).outcome == "applied"
        call(a, 10)  # the budget reached after alice's cancel
        assert a.flush()
        # The budget's own decision, as the pipeline sends it: refused as already decided, and not audited.
        [stop] = wait_until(lambda: [e for e in memory.for_task(tid) if getattr(e, "stops", False)], 20, "the stop")
        v = asyncio.run(control.decide(budgetstop.decision(stop)))  # type: ignore[arg-type]
        assert v.outcome == "already_decided", v
    assert a.flush()
    time.sleep(0.3)  # any background judging done
    got = cancels(memory, tid)
    assert [(e.decision.actor_id, e.outcome) for e in got] == [("alice", "applied")], got
    assert [d.actor_id for d in runs.decisions_of(record(a, tid))] == ["alice"]


def test_a_task_that_ended_is_left_alone(agent: tuple[Agent, InMemorySink]) -> None:
    a, memory = agent
    tid = f"ended-{uuid.uuid4().hex[:8]}"
    attrs = {cv.TASK_ID: tid, cv.TASK_NAME: "e", cv.AGENT_ID: "rivet", cv.BUDGET_USD: 0.05, cv.BUDGET_STOP: True}
    with a.tracer.start_as_current_span("e", attributes=attrs):
        call(a, 10)
        assert a.flush()
        [stop] = wait_until(lambda: [e for e in memory.for_task(tid) if getattr(e, "stops", False)], 20, "the stop")
    wait_until(lambda: (record(a, tid) or {}).get("state") == "finished", 20, "the run's end recorded")
    # The same crossing replayed after the end (a journal replay, a late replica): refused, not audited.
    control = a.processor.pipeline.control
    v = asyncio.run(control.decide(budgetstop.decision(stop)))  # type: ignore[arg-type]
    assert v.outcome == "duplicate", v  # the budget's cancel had been recorded while the task ran
    assert len(cancels(memory, tid)) == 1
