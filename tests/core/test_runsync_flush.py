"""Facts of runs written to the control log: side by side for runs without
approval requests (many in one transaction with the local store), every run
written once, a failed write kept for the next round, an ended run waiting
to be written holding only its view's ids, and runs beyond the bound
dropped and counted."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spanvisor.control import runs
from spanvisor.control.log import ControlLog
from spanvisor.control.runsync import MAX_PENDING, WRITE_IN_ONE, RunSync
from spanvisor.events import ApprovalRequest, Event, TaskFinished, TaskStarted, TaskView
from spanvisor.statestores.api import Change, Claim
from spanvisor.statestores.local import LocalStateStore
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

    async def put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, *, own: bool = False
    ) -> Claim:
        if key == self.bad_key:
            raise OSError("the store is away")
        return await super().put_if_newer(namespace, key, value, version, owner, own=own)


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


class CountingLocalStore(LocalStateStore):
    """The local store (batches), counting its calls; ``fail`` batches refused."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.fail = 0

    async def update_many(self, updates: Sequence[tuple[str, str, Change]], owner: str) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("the store is away")
        self.batches.append(len(updates))
        await super().update_many(updates, owner)


def test_with_the_local_store_runs_are_written_many_in_one_transaction(tmp_path: Path) -> None:
    """A store that batches takes up to WRITE_IN_ONE runs (records and lists
    of runs) in one call, a task id's runs in order among them; the records
    are those written one at a time; a failed batch goes back whole and is
    written on the next round; a record another process wrote is updated
    (compare-and-set at its version + 1)."""

    async def go() -> None:
        store = CountingLocalStore(tmp_path / "state.db")
        await store.start()
        try:
            sync, log = RunSync(TaskTracker(), lambda _: None), ControlLog(store)
            assert log.batches
            # Another process recorded t7's run as running (version 1).
            await ControlLog(store, owner="other").open_run(_view("t7", "r7"))
            # A single change goes through update_many on this store too (one
            # step on its thread): the record, then the task's list of runs.
            assert store.batches == [1, 1]
            store.batches.clear()
            for i in range(WRITE_IN_ONE + 100):
                sync.observe(_run(f"t{i}", f"r{i}"))
            for r in ("a", "b", "c"):
                sync.observe(_run("shared", r))
            store.fail = 1
            try:
                await sync.flush(log)
            except OSError:
                pass
            else:
                raise AssertionError("the failed batch was not reported")
            assert len(sync._pending) == WRITE_IN_ONE + 103  # nothing lost
            await sync.flush(log)
            assert not sync.pending
            assert store.batches == [2 * WRITE_IN_ONE, 2 * 103]  # a record and a listing a run
            for i in range(WRITE_IN_ONE + 100):
                rec = await log.record(f"t{i}", f"r{i}")
                assert runs.state_of(rec) == "finished"
                assert rec is not None and rec["agent_id"] == "agent" and rec["started_ns"] == 5
            assert (await log.record("t7", "r7") or {})["v"] == 2  # the other process's version + 1
            assert sorted(await log.runs_of("shared")) == ["a", "b", "c"]
            assert await log.runs_of("t9") == ["r9"]
        finally:
            await store.close()

    asyncio.run(go())


def test_runs_beyond_the_bound_are_dropped_and_counted() -> None:
    """With the store away, at most MAX_PENDING runs wait; the oldest beyond
    are dropped, each counted in spanvisor_dropped_total{reason="control_log_behind"},
    and spanvisor_control_runs_waiting says how many wait."""
    tracker = TaskTracker()
    sync = RunSync(tracker, lambda _: None)
    for i in range(MAX_PENDING + 5):
        sync.observe(_run(f"t{i}", "r"))
    assert tracker.stats.value("dropped_total", reason="control_log_behind", sink="") == 5
    assert tracker.stats.value("control_runs_waiting") == MAX_PENDING
    assert ("t0", "r") not in sync._pending and ("t5", "r") in sync._pending


def test_a_run_that_ended_with_a_request_open_is_still_written_alone() -> None:
    """Its write closes the request in the shared open list, so it is never
    side by side with others, before it ended or after."""
    sync = RunSync(TaskTracker(), lambda _: None)
    asked = dataclasses.replace(_view("t1", "r1"), approvals=(ApprovalRequest("a1", "Deploy?"),))
    sync.observe([TaskStarted(event_id="s1", time_ns=10, task=asked)])
    sync.observe(_run("t0", "r0"))
    keys = list(sync._pending)
    assert keys[0] == ("t1", "r1")
    assert sync._side_by_side(keys, in_one=True) == ([("t1", "r1")], False)
    asyncio.run(sync.flush(ControlLog(InMemoryStateStore())))  # its request written and listed
    sync.observe([TaskFinished(event_id="f1", time_ns=20, task=asked, outcome="complete", duration_s=1.0)])
    sync.observe(_run("t2", "r2"))
    keys = list(sync._pending)
    assert keys[0] == ("t1", "r1") and not sync._pending[keys[0]].opened
    assert sync._side_by_side(keys, in_one=True) == ([("t1", "r1")], False)
    assert sync._side_by_side(keys[1:], in_one=True) == ([("t2", "r2")], True)
