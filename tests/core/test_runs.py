"""A task id used again after its task finished is a new run: its own event
ids, decisions and cancel request (orchestrators reuse job ids on retries).

In-process, with the real OTel SDK and the pipeline's Control.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from spanvisor.agent import CancelRequested, task
from spanvisor.control import hub
from spanvisor.events import ContextWarning, Decision, HumanIntervention, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

from ._invariants import check_stream
from ._sdk import Agent


def decide(action: str, task_id: str, actor: str = "alice") -> Any:
    control = hub.current()
    assert control is not None
    d = Decision(uuid.uuid4().hex, task_id, action, actor, time.time_ns(), actor_name=actor)  # type: ignore[arg-type]
    return asyncio.run(control.decide(d))


def fail(agent: Agent, task_id: str) -> None:
    with pytest.raises(RuntimeError), task("job", agent_id="orch", task_id=task_id, tracer=agent.tracer):
        raise RuntimeError("flaky")


def finished(sink: InMemorySink, task_id: str, n: int) -> bool:
    return len([e for e in sink.of_type(TaskFinished) if e.task_id == task_id]) >= n


def test_a_rerun_that_fails_again_can_be_retried_again(live: tuple[Agent, InMemorySink]) -> None:
    agent, sink = live
    fail(agent, "job-42")
    wait_until(lambda: finished(sink, "job-42", 1), what="run 1 to fail")
    first = decide("retry", "job-42")
    assert first.outcome == "applied", first
    fail(agent, "job-42")  # the orchestrator's rerun, under the same id
    wait_until(lambda: finished(sink, "job-42", 2), what="run 2 to fail")
    second = decide("retry", "job-42", actor="bob")
    assert second.outcome == "applied", second  # not "already retried by alice"
    assert first.run_id != second.run_id
    ends = [e for e in sink.of_type(TaskFinished) if e.task_id == "job-42"]
    assert [e.task.run_id for e in ends] == [first.run_id, second.run_id]
    agent.flush()
    wait_until(lambda: len([e for e in sink.of_type(HumanIntervention) if e.outcome == "applied"]) == 2, what="both")


def test_a_rerun_after_a_cancel_is_not_cancelled(live: tuple[Agent, InMemorySink]) -> None:
    agent, sink = live
    with task("job", agent_id="orch", task_id="job-77", tracer=agent.tracer) as t:
        wait_until(lambda: any(isinstance(e, TaskStarted) for e in sink.events), what="run 1 to start")
        wait_until(lambda: decide("cancel", "job-77").outcome == "applied", what="the cancel to apply")
        wait_until(lambda: t.cancel_requested, what="run 1 to see its cancel")
        with pytest.raises(CancelRequested):
            t.raise_if_cancelled()
    wait_until(lambda: finished(sink, "job-77", 1), what="run 1 to end")
    with task("job", agent_id="orch", task_id="job-77", tracer=agent.tracer) as t2:
        assert t2.cancel_requested is False, "run 2 inherited run 1's cancel"
        time.sleep(0.3)
        assert t2.cancel_requested is False
    wait_until(lambda: finished(sink, "job-77", 2), what="run 2 to end")
    ends = [e for e in sink.of_type(TaskFinished) if e.task_id == "job-77"]
    assert [e.task.cancel_requested for e in ends] == [True, False]


def test_each_run_has_its_own_event_ids(live: tuple[Agent, InMemorySink]) -> None:
    agent, sink = live
    for _ in range(2):
        attrs = {cv.TASK_ID: "job-9", cv.TASK_NAME: "job", cv.CONTEXT_LIMIT: 1000, cv.CONTEXT_TOKENS: 800}
        with agent.tracer.start_as_current_span("job", attributes=attrs):
            pass
    wait_until(lambda: finished(sink, "job-9", 2), what="both runs")
    assert agent.flush()
    events = [e for e in sink.events if e.task_id == "job-9"]
    runs = sorted({e.task.run_id for e in events})
    assert len(runs) == 2
    for run in runs:
        check_stream([e for e in events if e.task.run_id == run], all_finished=True)
    warnings = [e for e in events if isinstance(e, ContextWarning)]
    assert len(warnings) == 2 and len({w.event_id for w in warnings}) == 2
    for kind in (TaskStarted, TaskFinished):
        ids = [e.event_id for e in events if isinstance(e, kind)]
        assert len(ids) == 2 and len(set(ids)) == 2, kind
