"""Decisions across processes wake their waiters through PostgreSQL's
LISTEN/NOTIFY, not at the next poll.

Each ControlLog here has its own PostgresStateStore (two replicas, or a
replica and an agent's process) and polls only every 30 s, and waits up to
60 s: a wait that returns within 15 s was woken by the other store's
notification (without it, each test here fails at that bound).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from spanvisor.control.log import NAMESPACE, ControlLog, decision_to_dict
from spanvisor.control.runs import run_key
from spanvisor.events import ApprovalRequest, Decision, TaskView, question_digest, run_id_of
from spanvisor.statestores.api import WatchableStateStore
from spanvisor_postgres.statestore import PostgresStateStore

from .conftest import fetch, make_config, run

SLOW = {"poll_s": 30.0, "watched_poll_s": 30.0}


class CountingStore(PostgresStateStore):
    """The real store, counting its reads: a waiter that has read is waiting."""

    reads = 0

    async def get(self, namespace: str, key: str) -> Any:
        value = await super().get(namespace, key)
        self.reads += 1
        return value


RUN = run_id_of("ab" * 16, "cd" * 8)


def _decision(n: int, task_id: str = "T-notify") -> Decision:
    return Decision(f"iv-{n}", task_id, "approve", "U1", time.time_ns(), approval_id=f"a{n}", source="cli", run_id=RUN)


async def _asked(log: ControlLog, task_id: str, n: int) -> None:
    """The run of ``task_id``, running, with requests a1..an open."""
    view = TaskView(task_id=task_id, trace_id="ab" * 16, root_span_id="cd" * 8, agent_id="rivet", run_id=RUN)
    asks = tuple(ApprovalRequest(f"a{i}", f"q{i}?", digest=question_digest(f"q{i}?")) for i in range(1, n + 1))
    await log.open_run(view, asks)


async def _until(cond: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.05)


def test_a_decision_recorded_elsewhere_wakes_a_waiter(db_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        here = await CountingStore.open(make_config(tmp_path / "a", db_url))
        there = await PostgresStateStore.open(make_config(tmp_path / "b", db_url))
        try:
            assert isinstance(here, WatchableStateStore)
            waiter, clicker = ControlLog(here, "agent", **SLOW), ControlLog(there, "replica", **SLOW)
            await _asked(clicker, "T-notify", 2)
            waiting = asyncio.ensure_future(waiter.wait("T-notify", after=0, timeout_s=60.0))
            await _until(lambda: here._listener is not None and here.reads >= 1)  # it read, found nothing, waits
            assert (await clicker.apply(_decision(1), time.time_ns())).outcome == "applied"
            got = await asyncio.wait_for(waiting, 15.0)
            assert [d.intervention_id for d in got] == ["iv-1"]

            # The listening connection lost (a PostgreSQL restart, say): the
            # next wait listens again, and is woken again.
            pid = here._listener.get_server_pid()
            await fetch(db_url, "SELECT pg_terminate_backend($1)", pid)
            await _until(lambda: here._listener is None)
            reads = here.reads
            waiting = asyncio.ensure_future(waiter.wait("T-notify", after=1, timeout_s=60.0))
            await _until(lambda: here._listener is not None and here.reads > reads)
            assert (await clicker.apply(_decision(2), time.time_ns())).outcome == "applied"
            got = await asyncio.wait_for(waiting, 15.0)
            assert [d.intervention_id for d in got] == ["iv-2"]
        finally:
            await here.close()
            await there.close()

    run(main)


def test_without_notifications_a_waiter_still_polls(db_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        here = await PostgresStateStore.open(make_config(tmp_path / "a", db_url))
        try:
            # A decision written straight into the store, as a process that
            # cannot notify would: found by the poll.
            waiter = ControlLog(here, "agent", poll_s=0.05, watched_poll_s=0.05)
            other = ControlLog(here, "other")
            await _asked(other, "T-poll", 0)
            waiting = asyncio.ensure_future(waiter.wait("T-poll", after=0, timeout_s=20.0, run_id=RUN))
            await asyncio.sleep(0.2)
            key = run_key("T-poll", RUN)
            stored = dict(await here.get(NAMESPACE, key) or {})
            stored["items"] = [decision_to_dict(_decision(3, "T-poll"))]
            await here.put_if_newer(NAMESPACE, key, stored, int(stored["v"]) + 1, other.owner)
            got = await asyncio.wait_for(waiting, 25.0)
            assert [d.intervention_id for d in got] == ["iv-3"]
        finally:
            await here.close()

    run(main)
