"""A renamed task's run record on PostgreSQL, as replicas share it (issue 66,
control/moved.py): two stores (two pools) on one database are two replicas.
One moves the record while the other decides under the old id, and a third
view, of a replica that saw only the run's earlier events, writes under the
old id: nothing is lost, each decision is recorded once, in the record under
the root's id. The same on the in-memory and local stores is
``tests/core/test_control_rename.py``'s."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from spanvisor.config import Config
from spanvisor.control import moved, runs
from spanvisor.control.log import NAMESPACE, ControlLog
from spanvisor.control.runsync import RunSync
from spanvisor.events import ApprovalRequest, Checkpoint, Decision, TaskFinished, TaskView
from spanvisor.ids import run_id_of
from spanvisor.tracking.tracker import TaskTracker

ROOT = "cd" * 8
GO = ApprovalRequest("go", "Ship it?", requested_ns=1_000, digest="d-go")


def _view(task_id: str, trace: str, former: str | None = None) -> TaskView:
    return TaskView(
        task_id, trace, ROOT, "fixer", run_id=run_id_of(trace, ROOT), started_ns=5, approvals=(GO,), former_id=former
    )


def test_replicas_move_and_decide_at_once_on_postgres(pg_server: Any, tmp_path: Path) -> None:
    from spanvisor_postgres.settings import SETTINGS
    from spanvisor_postgres.statestore import PostgresStateStore

    config = Config.load(env={}, extra=SETTINGS).with_values(data_dir=str(tmp_path), database_url=pg_server.database())

    async def go() -> None:
        stores = [await PostgresStateStore.open(config, {}) for _ in range(2)]
        try:
            a, b = ControlLog(stores[0], owner="a"), ControlLog(stores[1], owner="b")
            assert a.batches
            rng = random.Random(66)
            for i in range(8):
                trace = f"{rng.getrandbits(120) + 1:032x}"
                d, r = f"{trace}-{ROOT}", run_id_of(trace, ROOT)
                await b.open_run(_view(d, trace), (GO,))
                cancel = Decision(f"c{i}-{trace}", d, "cancel", "U1", 20, run_id=r)
                ok = Decision(f"a{i}-{trace}", d, "approve", "U2", 21, approval_id="go", run_id=r, digest="d-go")
                jobs = [a.move(_view("fix-42", trace, d), d), b.apply(cancel, 30), b.apply(ok, 31)]
                rng.shuffle(jobs)
                got = await asyncio.gather(*jobs)
                assert [j.outcome for j in got if j is not None] == ["applied", "applied"]
                # B saw only the run's start: it ends the run under the old id.
                stale = RunSync(TaskTracker(), lambda _: None)
                stale.observe(
                    [
                        TaskFinished(
                            event_id=f"f{i}", time_ns=50, task=_view(d, trace), outcome="complete", duration_s=1.0
                        )
                    ]
                )
                await stale.flush(b)
                again = RunSync(TaskTracker(), lambda _: None)  # A's view, replayed: moves nothing more
                again.observe([Checkpoint(event_id=f"k{i}", time_ns=40, task=_view("fix-42", trace, d))])
                await again.flush(a)
                rec = await a.record("fix-42", r)
                assert rec is not None and await b.record(d, r) == rec
                assert sorted(x.intervention_id for x in runs.decisions_of(rec)) == sorted(
                    [cancel.intervention_id, ok.intervention_id]
                )
                assert runs.state_of(rec) == "finished" and runs.requests_of(rec)["go"]["state"] == "decided"
                assert moved.target(await stores[1].get(NAMESPACE, runs.run_key(d, r))) == "fix-42"
                assert r in await b.runs_of("fix-42") and await a.runs_of(d) == [r]
        finally:
            for s in stores:
                await s.close()

    asyncio.run(go())
