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
from spanvisor.events import Decision
from spanvisor.statestore import WatchableStateStore
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


def _decision(n: int, task_id: str = "T-notify") -> Decision:
    return Decision(f"iv-{n}", task_id, "approve", "U1", time.time_ns(), approval_id=f"a{n}", source="cli")


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
            waiting = asyncio.ensure_future(waiter.wait("T-notify", after=0, timeout_s=60.0))
            await _until(lambda: here._listener is not None and here.reads >= 1)  # it read, found nothing, waits
            assert (await clicker.record(_decision(1))).applied
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
            assert (await clicker.record(_decision(2))).applied
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
            waiting = asyncio.ensure_future(waiter.wait("T-poll", after=0, timeout_s=20.0))
            await asyncio.sleep(0.2)
            await here.put_if_newer(
                NAMESPACE, "T-poll", {"items": [decision_to_dict(_decision(3, "T-poll"))]}, 1, other.owner
            )
            got = await asyncio.wait_for(waiting, 25.0)
            assert [d.intervention_id for d in got] == ["iv-3"]
        finally:
            await here.close()

    run(main)
