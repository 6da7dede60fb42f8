"""``spanvisor audit verify`` checks what the log says, not only its chain:
one applied outcome per request (a quorum's earlier votes are not
outcomes), and a row for every decision the control log applied; the
sink's recovery writes a missing row, once, from the control log in this
database or in the local state store."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import asyncpg

from spanvisor.control.runs import decision_to_dict, run_key
from spanvisor.statestores.local import LocalStateStore
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_postgres.auditchain import verify
from spanvisor_postgres.recorded import NOTE, Recovery, missing, recovery_for
from spanvisor_postgres.statestore import PostgresStateStore

from .conftest import fetch, make_config
from .test_interventions import bare, decision, intervention
from .test_sink_basic import export_all


async def _problems(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return (await verify(conn)).problems
    finally:
        await conn.close()


def test_two_applied_outcomes_of_one_request_are_reported(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    view = dataclasses.replace(bare("inv-1"), run_id="r1")
    approve = decision("inv-1", 1, approval_id="a1", run_id="r1")
    reject = decision("inv-1", 2, action="reject", approval_id="a1", run_id="r1")
    # Two people of a quorum of two on a2: one vote, then the outcome.
    vote = intervention(view, decision("inv-1", 3, approval_id="a2", run_id="r1"), votes=1, votes_needed=2, known=False)
    final = intervention(
        view, decision("inv-1", 4, approval_id="a2", run_id="r1"), votes=2, votes_needed=2, known=False
    )

    async def go() -> None:
        await export_all(url, tmp_path, [[vote, final, intervention(view, approve, known=False)]])
        assert await _problems(url) == []
        await export_all(url, tmp_path, [[intervention(view, reject, known=False)]])

    asyncio.run(go())
    [problem] = asyncio.run(_problems(url))
    assert "request a1 of task inv-1 (run r1) has 2 applied outcomes" in problem


def test_an_applied_decision_without_its_row_is_reported_then_recovered_once(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    config = make_config(tmp_path, url)
    d = decision("inv-2", 1, approval_id="a1", run_id="r1", actor_name="alice")
    rec = {
        "v": 1,
        "task_id": "inv-2",
        "run_id": "r1",
        "agent_id": "rivet",
        "state": "running",
        "requests": {"a1": {"approval_id": "a1", "question": "Deploy?", "digest": "d" * 64, "state": "decided"}},
        "items": [decision_to_dict(d)],
    }

    async def go() -> None:
        store = await PostgresStateStore.open(config)
        try:
            assert (await store.put_if_newer("decisions", run_key("inv-2", "r1"), rec, 1, "a replica")).won
        finally:
            await store.close()
        [problem] = await _problems(url)
        assert "an applied decision of the control log has no row" in problem and d.intervention_id in problem
        # The sink's recovery (its pool, and its outbox: here written at once).
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        written: list[Any] = []

        async def pool_of() -> Any:
            return pool

        async def write(events: list[Any]) -> None:
            written.extend(events)
            await export_all(url, tmp_path, [events])

        try:
            recovery = Recovery(pool_of, write, grace_s=0.0)
            assert await recovery.once() == 1
            assert await recovery.once() == 0  # written once
            async with pool.acquire() as conn:
                assert await missing(conn, 2**62) == []
        finally:
            await pool.close()
        [event] = written
        assert event.decision == d and event.outcome == "applied" and event.request.question == "Deploy?"
        assert await _problems(url) == []
        rows = await fetch(url, "SELECT intervention_id, agent_id, question, notes::text FROM human_interventions")
        assert [(r[0], r[1], r[2]) for r in rows] == [(d.intervention_id, None, "Deploy?")]
        assert NOTE in rows[0][3]

    asyncio.run(go())


def test_the_local_state_store_s_applied_decisions_are_recovered_once(
    pg_server: Any, tmp_path: Path, caplog: Any
) -> None:
    """With the control log in the local SQLite store (``serve`` without the
    PostgreSQL state store), the sink lists its records: every applied
    decision and counted vote without a row, or a removed one, is written
    once; a later round reads only what was written since."""
    url = pg_server.database()
    d1 = decision("inv-3", 1, approval_id="a1", run_id="r1", actor_name="alice")
    vote = decision("inv-3", 2, approval_id="a2", run_id="r1", actor_name="bob")
    kept = decision("inv-3", 3, action="cancel", run_id="r1")  # has its row
    gone = decision("inv-3", 4, approval_id="a3", run_id="r1")  # had a row, deleted
    ask = {"question": "Deploy?", "digest": "d" * 64}
    rec = {
        "v": 1,
        "task_id": "inv-3",
        "run_id": "r1",
        "agent_id": "rivet",
        "state": "running",
        "requests": {
            "a1": {"approval_id": "a1", **ask, "state": "decided"},
            "a2": {"approval_id": "a2", **ask, "state": "open", "approvers": 2, "votes": [decision_to_dict(vote)]},
            "a3": {"approval_id": "a3", **ask, "state": "decided"},
        },
        "items": [decision_to_dict(d) for d in (d1, kept, gone)],
    }
    view = dataclasses.replace(bare("inv-3"), run_id="r1")

    async def go() -> None:
        await export_all(
            url, tmp_path, [[intervention(view, kept, known=False), intervention(view, gone, known=False)]]
        )
        owner = await asyncpg.connect(url)
        try:
            await owner.execute("DELETE FROM human_interventions WHERE intervention_id = $1", gone.intervention_id)
        finally:
            await owner.close()
        store = LocalStateStore(tmp_path / "state.db")
        await store.start()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        written: list[Any] = []

        async def pool_of() -> Any:
            return pool

        async def write(events: list[Any]) -> None:
            written.extend(events)
            await export_all(url, tmp_path, [events])

        try:
            assert (await store.put_if_newer("decisions", run_key("inv-3", "r1"), rec, 1, "serve")).won
            recovery = recovery_for(store, pool_of, write)
            assert recovery is not None
            recovery.grace_s = 0.0
            assert await recovery.once() == 2
            assert await recovery.once() == 0  # written once
            # A decision recorded later (another run): the next round finds it.
            late = decision("inv-3", 5, action="cancel", run_id="r2")
            rec2 = {**rec, "run_id": "r2", "requests": {}, "items": [decision_to_dict(late)]}
            assert (await store.put_if_newer("decisions", run_key("inv-3", "r2"), rec2, 1, "serve")).won
            assert await recovery.once() == 1
        finally:
            await pool.close()
            await store.close()
        by_id = {e.decision.intervention_id: e for e in written}
        assert set(by_id) == {d1.intervention_id, vote.intervention_id, late.intervention_id}
        assert (by_id[vote.intervention_id].votes, by_id[vote.intervention_id].votes_needed) == (1, 2)
        assert by_id[d1.intervention_id].request is not None and by_id[d1.intervention_id].task.agent_id == "rivet"
        rows = await fetch(url, "SELECT intervention_id, count(*) FROM human_interventions GROUP BY 1")
        assert {r[0]: r[1] for r in rows} == {i: 1 for i in (*by_id, kept.intervention_id)}
        [deleted] = await _problems(url)  # the deletion, reported as such; nothing missing
        assert "not by spanvisor prune" in deleted, deleted

    asyncio.run(go())
    # No store to search after a crash: said once, at start.
    assert recovery_for(InMemoryStateStore(), _no_pool, _no_write) is None
    assert any("keeps the control log in this process only" in r.getMessage() for r in caplog.records)


async def _no_pool() -> Any:
    raise AssertionError("not used")


async def _no_write(events: list[Any]) -> None:
    raise AssertionError("not used")
