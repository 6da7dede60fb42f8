"""The decision log is a hash chain nobody can rewrite unnoticed.

Decisions are written by the real PostgreSQL sink (every write method, and
replayed); each row becomes a link. Then the table is tampered with as
someone holding the database could (the update-refusing and
removal-recording triggers turned off where the tampering needs it), and
``spanvisor audit verify`` must name the first link that no longer holds;
pruning, the one sanctioned removal, keeps the chain intact.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.cli.main import main
from spanvisor_postgres.auditchain import GENESIS, verify
from spanvisor_postgres.queries import prune

from .conftest import fetch
from .test_interventions import bare, decision, intervention
from .test_sink_basic import export_all


def _decisions(task_id: str, n: int, first: int = 1) -> list[Any]:
    out = []
    for i in range(first, first + n):
        d = decision(task_id, i, comment=f"decision {i}", actor_name="alice")
        out.append(intervention(dataclasses.replace(bare(task_id), agent_id="rivet"), d, known=False))
    return out


async def _verdict(url: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await verify(conn)
    finally:
        await conn.close()


async def _sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()


def _cli_verify(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> tuple[int, str]:
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", url)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    code = main(["audit", "verify"])
    return code, capsys.readouterr().out


def test_every_decision_is_one_link_and_a_replay_takes_none(
    pg_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.database()
    batch = _decisions("chain-1", 3)

    async def go() -> list[Any]:
        for method in ("copy", "unnest", "executemany"):
            await export_all(url, tmp_path, [batch, batch], method)
        return await fetch(url, "SELECT * FROM human_interventions ORDER BY chain_seq")

    rows = asyncio.run(go())
    assert [r["chain_seq"] for r in rows] == [1, 2, 3]
    assert rows[0]["prev_hash"] == GENESIS
    assert [r["prev_hash"] for r in rows[1:]] == [r["row_hash"] for r in rows[:-1]]
    code, out = _cli_verify(url, tmp_path, capsys, monkeypatch)
    assert code == 0, out
    chain, signed = out.strip().splitlines()  # the chain, then serve's signatures (test_audit_sign.py)
    assert chain == f"decision log intact: 3 links (3 rows); head 3 {rows[-1]['row_hash']}"
    assert signed.startswith("decision signatures intact: 3 links (3 signed, 0 removed)"), out


def test_a_row_cannot_be_updated(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    asyncio.run(export_all(url, tmp_path, [_decisions("chain-2", 2)]))
    with pytest.raises(asyncpg.RaiseError, match="never changed"):
        asyncio.run(_sql(url, "UPDATE human_interventions SET comment = 'approved by bob' WHERE chain_seq = 1"))


# Each tampering, and the words verify names its first broken link with.
TAMPERING = {
    "changed": (
        "ALTER TABLE human_interventions DISABLE TRIGGER human_interventions_unchanged",
        "UPDATE human_interventions SET actor_name = 'mallory' WHERE chain_seq = {k}",
    ),
    "changed and rehashed": (
        "ALTER TABLE human_interventions DISABLE TRIGGER human_interventions_unchanged",
        "UPDATE human_interventions SET comment = 'edited' WHERE chain_seq = {k}",
        "UPDATE human_interventions h SET row_hash = spanvisor_intervention_hash(h.prev_hash, h) WHERE chain_seq = {k}",
    ),
    "deleted": ("DELETE FROM human_interventions WHERE chain_seq = {k}",),
    "deleted unrecorded": (
        "ALTER TABLE human_interventions DISABLE TRIGGER human_interventions_removed",
        "DELETE FROM human_interventions WHERE chain_seq = {k}",
    ),
    "written past the chain": (
        "ALTER TABLE human_interventions DISABLE TRIGGER human_interventions_link",
        "INSERT INTO human_interventions (intervention_id, task_id, action, actor) "
        "VALUES ('forged-{k}', 'chain-x', 'approve', 'mallory')",
    ),
}
NAMED = {
    "changed": "link {k} (",
    "changed and rehashed": "link {n} (",  # the next link no longer follows it
    "deleted": "link {k} (",
    "deleted unrecorded": "link {k} is missing",
    "written past the chain": "row forged-{k} has no link",
}


# tmp_path only holds the sink's data dir, the same for every example.
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(2, 6),
    pruned=st.booleans(),
    how=st.sampled_from([None, *TAMPERING]),
    data=st.data(),
)
def test_verify_names_the_first_broken_link_and_nothing_else(
    pg_server: Any, tmp_path: Path, rows: int, pruned: bool, how: str | None, data: st.DataObject
) -> None:
    """Any number of decisions, pruned or not, then at most one tampering:
    verify is intact exactly when nothing was tampered with, and otherwise
    names the link it happened at; a rewrite or unrecorded deletion of the
    newest link shows against the head kept before it."""
    url = pg_server.database()
    # Rows 1..rows on a task prune removes (started long ago, no task row:
    # an orphan decision), then two more decided after it.
    k = data.draw(st.integers(rows + 1, rows + 2) if pruned else st.integers(1, rows), label="tampered link")

    async def go() -> Any:
        await export_all(url, tmp_path, [_decisions("chain-old", rows)])
        if pruned:
            db = await asyncpg.create_pool(url, min_size=1, max_size=1)
            try:
                await prune(db, 1.0)
            finally:
                await db.close()
            await export_all(url, tmp_path, [_decisions("chain-new", 2, first=rows + 1)])
        kept = await _verdict(url)  # the head a careful operator keeps elsewhere
        if how is not None:
            await _sql(url, *(s.format(k=k) for s in TAMPERING[how]))
        return kept, await _verdict(url)

    kept, verdict = asyncio.run(go())
    total = rows + (2 if pruned else 0)
    if how in ("changed and rehashed", "deleted unrecorded") and k == total:
        # The newest link rewritten or dropped: the chain alone cannot tell,
        # the head kept elsewhere does (docs/design/audit.md).
        assert not verdict.problems and (verdict.head_seq, verdict.head_hash) != (kept.head_seq, kept.head_hash)
        return
    if how is None:
        assert not verdict.problems, verdict
        assert verdict.links == total
        assert verdict.removed == ({"pruned": rows} if pruned else {})
        return
    assert verdict.problems, (how, verdict)
    assert verdict.problems[0].startswith(NAMED[how].format(k=k, n=k + 1)), (how, verdict.problems)


def test_a_decision_after_pruning_continues_the_chain(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()

    async def go() -> tuple[Any, list[Any]]:
        await export_all(url, tmp_path, [_decisions("chain-gone", 2)])
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            await prune(pool, 1.0)
        finally:
            await pool.close()
        await export_all(url, tmp_path, [_decisions("chain-next", 1, first=3)])
        removed = await fetch(url, "SELECT chain_seq, how FROM human_interventions_removed ORDER BY chain_seq")
        return await _verdict(url), removed

    verdict, removed = asyncio.run(go())
    assert [(r["chain_seq"], r["how"]) for r in removed] == [(1, "pruned"), (2, "pruned")]
    assert not verdict.problems and verdict.links == 3 and verdict.present == 1
