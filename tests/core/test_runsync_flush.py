"""Facts of runs written to the control log: side by side for runs without
approval requests, every run written once, a failed write kept for the next
round, and an ended run waiting to be written holding only its view's ids."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from spanvisor.control import runs
from spanvisor.control.log import ControlLog
from spanvisor.control.runsync import RunSync
from spanvisor.events import Event, TaskFinished, TaskStarted, TaskView
from spanvisor.statestores.api import Claim
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.tracking.tracker import TaskTracker


def _view(task_id: str, run_id: str) -> TaskView:
    return TaskView(
        task_id, "ab" * 16, "cd" * 8, "agent", run_id=run_id, started_ns=5, repo="acme/plant", model="m", step="s"
    )


def _run(task_id: str, run_id: str) -> list[Event]:
    v = _view(task_id, run_id)
    return [
        TaskStarted(event_id=f"s-{task_id}-{run_id}", time_ns=10, task=v),
        TaskFinished(event_id=f"f-{task_id}-{run_id}", time_ns=20, task=v, outcome="complete", duration_s=1.0),
    ]


class FailingStore(InMemoryStateStore):
    """Refuses every write of one key (an outage of one row, say)."""

    def __init__(self, bad_key: str) -> None:
        super().__init__()
        self.bad_key = bad_key

    async def put_if_newer(self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str) -> Claim:
        if key == self.bad_key:
            raise OSError("the store is away")
        return await super().put_if_newer(namespace, key, value, version, owner)


def test_every_run_is_written_once_side_by_side() -> None:
    async def go() -> tuple[RunSync, ControlLog]:
        sync, log = RunSync(TaskTracker(), lambda _: None), ControlLog(InMemoryStateStore())
        # 150 tasks with a run each (more than are written at once), and
        # three runs of one task (written one after another).
        for i in range(150):
            sync.observe(_run(f"t{i}", f"r{i}"))
        for r in ("a", "b", "c"):
            sync.observe(_run("shared", r))
        await sync.flush(log)
        return sync, log

    sync, log = asyncio.run(go())
    assert not sync.pending

    async def read() -> None:
        for i in range(150):
            rec = await log.record(f"t{i}", f"r{i}")
            assert runs.state_of(rec) == "finished"
            assert rec is not None and rec["agent_id"] == "agent" and rec["started_ns"] == 5
        assert sorted(await log.runs_of("shared")) == ["a", "b", "c"]

    asyncio.run(read())


def test_a_failed_write_stays_for_the_next_round() -> None:
    bad = runs.run_key("t3", "r3")

    async def go() -> None:
        store = FailingStore(bad)
        sync, log = RunSync(TaskTracker(), lambda _: None), ControlLog(store)
        for i in range(10):
            sync.observe(_run(f"t{i}", f"r{i}"))
        try:
            await sync.flush(log)
        except OSError:
            pass
        else:
            raise AssertionError("the failed write was not reported")
        assert sync.pending
        assert runs.state_of(await log.record("t4", "r4")) == "finished"  # the others went on
        assert await log.record("t3", "r3") is None
        store.bad_key = ""
        await sync.flush(log)
        assert not sync.pending
        assert runs.state_of(await log.record("t3", "r3")) == "finished"

    asyncio.run(go())


def test_an_ended_run_waiting_to_be_written_keeps_only_the_ids_of_its_view() -> None:
    sync = RunSync(TaskTracker(), lambda _: None)
    started, finished = _run("t1", "r1")
    sync.observe([started])
    (p,) = sync._pending.values()
    assert p.view is started.task  # open: the tracker's view, shared
    sync.observe([finished])
    assert (p.view.task_id, p.view.run_id, p.view.agent_id, p.view.started_ns) == ("t1", "r1", "agent", 5)
    assert p.view.repo is None and p.view.model is None and p.view.step is None
    assert p.opened is None and p.gone == frozenset()


def test_a_run_whose_listing_failed_is_listed_on_the_next_round() -> None:
    """The run's record written, adding it to its task's list of runs failed:
    the next round finds the record and still lists the run."""

    async def go() -> None:
        store = FailingStore("t5")  # the key of task t5's list of runs
        sync, log = RunSync(TaskTracker(), lambda _: None), ControlLog(store)
        sync.observe(_run("t5", "r5"))
        try:
            await sync.flush(log)
        except OSError:
            pass
        else:
            raise AssertionError("the failed listing was not reported")
        assert runs.state_of(await log.record("t5", "r5")) == "finished"  # the record went in
        store.bad_key = ""
        await sync.flush(log)
        assert not sync.pending
        assert await log.runs_of("t5") == ["r5"]

    asyncio.run(go())
