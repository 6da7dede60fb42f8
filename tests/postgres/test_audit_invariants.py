"""``spanvisor audit verify`` checks what the log says, not only its chain:
one applied outcome per request (a quorum's earlier votes are not
outcomes), and a row for every decision the control log applied; the
sink's recovery writes a missing row, once."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import asyncpg

from spanvisor.control.runs import decision_to_dict, run_key
from spanvisor_postgres.auditchain import verify
from spanvisor_postgres.recorded import NOTE, Recovery, missing
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
