"""A budget set to stop, with two replicas on one PostgreSQL (state store and
audit trail): both see the call that reaches the task's budget (each
tracks the task: its spans go to both), both send the budget's cancel, and
one is recorded: one applied intervention among both replicas' sinks, one
``human_interventions`` row, one cancel in the run's shared record. A person's
cancel after it is refused as already decided by the budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from spanvisor.config import Config
from spanvisor.control import runs
from spanvisor.events import BudgetWarning, Decision, HumanIntervention, TaskFinished
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor_postgres.settings import SETTINGS
from spanvisor_postgres.sink import PostgresSink
from tests.waiting import wait_until

from .conftest import fetch


def _replica(tmp: Path, db_url: str, sink: InMemorySink, name: str) -> Pipeline:
    env = {
        "SPANVISOR_DATA_DIR": str(tmp / name),
        "SPANVISOR_DATABASE_URL": db_url,
        "SPANVISOR_STATE_STORE": "postgres",
        "SPANVISOR_REPLICA_ID": name,
        "SPANVISOR_BUDGET_STOP": "rivet",  # the agent's default: its tasks' budgets stop them
    }
    config = Config.load(env=env, extra=SETTINGS).with_values(shutdown_timeout_s=5.0)
    p = Pipeline(config, sinks=[PostgresSink(), sink]).start()
    assert p.wait_ready(30)
    return p


def test_two_replicas_seeing_the_crossing_record_one_cancel(pg_server: Any, tmp_path: Path) -> None:
    db_url = pg_server.database()
    sinks = {"a": InMemorySink(), "b": InMemorySink()}
    replicas = {name: _replica(tmp_path, db_url, sink, name) for name, sink in sinks.items()}
    provider = TracerProvider(shutdown_on_exit=False)
    for p in replicas.values():
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=p))
    tracer = provider.get_tracer("agent")
    tid = f"spend-{uuid.uuid4().hex[:6]}"

    def applied() -> list[HumanIntervention]:
        every = [e for s in sinks.values() for e in s.of_type(HumanIntervention) if e.task_id == tid]
        return [e for e in every if e.outcome == "applied"]

    try:
        root_attrs = {cv.TASK_ID: tid, cv.TASK_NAME: "spend", cv.AGENT_ID: "rivet", cv.BUDGET_USD: 0.10}
        with tracer.start_as_current_span("spend", attributes=root_attrs):
            for cents in (4, 4, 4):  # the third call reaches $0.10
                with tracer.start_as_current_span("chat", attributes={cv.GEN_AI_REQUEST_MODEL: "m"}) as call:
                    call.set_attributes({cv.GEN_AI_INPUT: 10, cv.GEN_AI_OUTPUT: 5, cv.GEN_AI_COST: cents / 100})
            for p in replicas.values():
                assert p.force_flush(10)
            # Both replicas said the crossing, and sent the same cancel.
            for s in sinks.values():
                wait_until(lambda s=s: [e for e in s.for_task(tid) if isinstance(e, BudgetWarning) and e.stops], 20)
            wait_until(applied, 20, "the budget's cancel")
            # A person's cancel after it: refused, the budget decided first.
            alice = Decision(uuid.uuid4().hex, tid, "cancel", "alice", time.time_ns(), actor_name="alice")
            v = asyncio.run(replicas["b"].control.decide(alice))
            assert v.outcome == "already_decided" and "budget" in (v.reason or ""), v
        for name, s in sinks.items():
            wait_until(lambda s=s: [e for e in s.of_type(TaskFinished) if e.task_id == tid], 20, f"{name}: the end")
        for p in replicas.values():
            assert p.force_flush(10)
        time.sleep(0.5)  # a second cancel, were one sent late, would be judged by now
        [stop] = applied()
        d = stop.decision
        assert (d.actor_id, d.actor_name, d.source) == ("spanvisor:budget", "budget", "budget")
        assert d.comment == "budget reached: $0.12 of $0.10", d.comment
        rec = asyncio.run(replicas["a"].control.run(tid))
        assert [x.intervention_id for x in runs.decisions_of(rec) if x.action == "cancel"] == [d.intervention_id]
        rows = asyncio.run(fetch(db_url, "SELECT * FROM human_interventions WHERE task_id = $1", tid))
        assert [(r["actor"], r["source"], r["outcome"]) for r in rows if r["outcome"] == "applied"] == [
            ("spanvisor:budget", "budget", "applied")
        ]
        # alice's refused cancel is audited as a person's refusal; the budget's duplicate left no row.
        assert sorted(r["actor"] for r in rows) == ["alice", "spanvisor:budget"], rows
    finally:
        provider.shutdown()
        for p in replicas.values():
            p.shutdown(5)
