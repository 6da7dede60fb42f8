"""Removals that cannot be forged, tried by a database user with exactly
the rights docs/design/audit.md prescribes (SELECT, INSERT, UPDATE, DELETE on the
tables) and, where that is not enough, by the owner:

* a same-day decision deleted after ``set_config('spanvisor.removing',
  'pruned')``: recorded as deleted, and verify says so;
* a removal record relabelled ``pruned``, or written by hand: refused;
* a prune record written by hand to pass a deletion off as retention:
  verify names it (younger than the floor), or the removal is ``deleted``
  (the row newer than the forged cutoff);
* prune records changed or removed, the tables truncated: refused (the
  owner's TRUNCATE too), and a legitimate prune stays intact.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from spanvisor_postgres.auditchain import verify
from spanvisor_postgres.queries import prune

from .test_interventions import bare, decision, intervention
from .test_sink_basic import export_all

RIGHTS = "SELECT, INSERT, UPDATE, DELETE"


def _as(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


async def _setup(url: str, tmp_path: Path) -> str:
    """Three decisions of today and one of 2025; a role with the prescribed rights."""
    now = time.time_ns()
    today = [decision("rm-today", i, time_ns=now - i * 10**9) for i in range(1, 4)]
    old = decision("rm-old", 9)
    await export_all(url, tmp_path, [[intervention(bare(d.task_id), d, known=False) for d in [*today, old]]])
    user = f"auditee_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'pw'")
        await conn.execute(f"GRANT {RIGHTS} ON ALL TABLES IN SCHEMA public TO {user}")
        await conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {user}")
    finally:
        await conn.close()
    return _as(url, user, "pw")


async def _problems(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return (await verify(conn)).problems
    finally:
        await conn.close()


async def _run(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for s in statements:
                await conn.execute(s)
    finally:
        await conn.close()


def test_a_session_setting_no_longer_passes_a_deletion_off_as_pruning(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()

    async def go() -> None:
        user = await _setup(url, tmp_path)
        await _run(
            user,
            "SELECT set_config('spanvisor.removing', 'pruned', true)",
            "DELETE FROM human_interventions WHERE chain_seq = 1",
        )
        [problem] = await _problems(url)
        assert problem.startswith("link 1 (") and "not by spanvisor prune" in problem

    asyncio.run(go())


def test_removal_records_cannot_be_relabelled_or_written_by_hand(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()

    async def go() -> None:
        user = await _setup(url, tmp_path)
        await _run(user, "DELETE FROM human_interventions WHERE chain_seq = 2")
        for forged in (
            ("UPDATE human_interventions_removed SET how = 'pruned'",),
            ("DELETE FROM human_interventions_removed",),
            (
                "INSERT INTO human_interventions_removed (chain_seq, row_hash, intervention_id, how)"
                " VALUES (99, 'x', 'y', 'pruned')",
            ),
            ("INSERT INTO decision_prunes (older_than_s) VALUES (1e6)", "UPDATE decision_prunes SET older_than_s = 1"),
            ("INSERT INTO decision_prunes (older_than_s) VALUES (1e6)", "DELETE FROM decision_prunes"),
        ):
            with pytest.raises(asyncpg.RaiseError, match="never changed"):
                await _run(user, *forged)
        for truncate in ("human_interventions", "human_interventions_removed", "decision_prunes"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _run(user, f"TRUNCATE {truncate}")
            with pytest.raises(asyncpg.RaiseError, match="never truncated"):
                await _run(url, f"TRUNCATE {truncate} CASCADE")  # the owner: refused by its trigger
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # turning a trigger off takes the owner
            await _run(user, "ALTER TABLE human_interventions_removed DISABLE TRIGGER human_interventions_removed_kept")
        [problem] = await _problems(url)
        assert problem.startswith("link 2 (") and "not by spanvisor prune" in problem

    asyncio.run(go())


def test_a_prune_record_written_by_hand_is_named(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()

    async def go() -> None:
        user = await _setup(url, tmp_path)
        # A forged prune whose cutoff covers today's decision: labelled pruned,
        # and verify names the prune as younger than the floor (a day).
        await _run(
            user,
            "INSERT INTO decision_prunes (older_than_s) VALUES (0)",
            "DELETE FROM human_interventions WHERE chain_seq = 1",
        )
        # One that claims a two-day rule: today's decision is newer than its
        # cutoff, so its removal is a deletion.
        await _run(
            user,
            "INSERT INTO decision_prunes (older_than_s) VALUES (172800)",
            "DELETE FROM human_interventions WHERE chain_seq = 2",
        )
        conn = await asyncpg.connect(url)
        try:
            how = dict(await conn.fetch("SELECT chain_seq, how FROM human_interventions_removed"))
        finally:
            await conn.close()
        assert how == {1: "pruned", 2: "deleted"}
        problems = await _problems(url)
        assert any(p.startswith("prune record 1 ") and "younger than 1 days" in p for p in problems), problems
        assert any(p.startswith("link 2 (") and "not by spanvisor prune" in p for p in problems), problems

    asyncio.run(go())


def test_prune_removes_only_decisions_past_the_floor_and_stays_intact(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()

    async def go() -> None:
        await _setup(url, tmp_path)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            await prune(pool, 1.0)  # asks for everything older than a second
        finally:
            await pool.close()
        conn = await asyncpg.connect(url)
        try:
            left = [r[0] for r in await conn.fetch("SELECT task_id FROM human_interventions")]
            removed = [tuple(r) for r in await conn.fetch("SELECT how, prune_seq FROM human_interventions_removed")]
        finally:
            await conn.close()
        assert sorted(left) == ["rm-today"] * 3  # younger than the floor: kept
        assert removed == [("pruned", 1)]
        assert await _problems(url) == []

    asyncio.run(go())


def test_a_prune_record_changed_by_the_owner_is_named(pg_server: Any, tmp_path: Path) -> None:
    """The owner may turn the guard off: a prune record rewritten to cover
    more is then a broken link of the prune chain."""
    url = pg_server.database()

    async def go() -> None:
        await _setup(url, tmp_path)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            await prune(pool, 1.0)
        finally:
            await pool.close()
        assert await _problems(url) == []
        await _run(
            url,
            "ALTER TABLE decision_prunes DISABLE TRIGGER decision_prunes_kept",
            "UPDATE decision_prunes SET older_than_s = 1e7 WHERE seq = 1",
        )
        problems = await _problems(url)
        assert problems and problems[0] == "prune record 1 was changed after it was written", problems

    asyncio.run(go())
