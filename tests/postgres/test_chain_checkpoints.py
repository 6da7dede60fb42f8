"""Checkpoints of the decision log's chain head (docs/design/audit.md).

The real PostgreSQL sink writes decisions and, every interval, records the
chain's head in ``decision_chain_checkpoints``, logs it once and publishes
it to the state store, forward only. ``spanvisor audit verify`` then checks
the chain against those checkpoints and against a head given with
``--head``: a rewrite of the newest links, which the chain alone cannot
show, shows against a head kept before it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.cli.main import main
from spanvisor.config import Config
from spanvisor.sink import SinkResult
from spanvisor.statestores.chainhead import ChainHead, advance, read_head
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_postgres import PostgresSink
from spanvisor_postgres.auditchain import verify
from spanvisor_postgres.checkpoints import Checkpointer
from spanvisor_postgres.settings import SETTINGS
from spanvisor_postgres.statestore import PostgresStateStore
from tests.waiting import wait_until

from .conftest import fetch, make_config, make_ctx
from .test_audit_chain import _decisions, _sql

pytestmark = pytest.mark.timeout_s(240)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("decision log head:")]


async def _links(url: str) -> dict[int, str]:
    rows = await fetch(url, "SELECT chain_seq, row_hash FROM human_interventions WHERE chain_seq IS NOT NULL")
    return {int(r["chain_seq"]): r["row_hash"] for r in rows}


async def _checkpoints(url: str) -> list[tuple[int, str]]:
    return [
        (r["seq"], r["row_hash"]) for r in await fetch(url, "SELECT * FROM decision_chain_checkpoints ORDER BY seq")
    ]


class Replica:
    """A checkpointer of its own (as another replica's sink has) on a pool of its own."""

    def __init__(self, url: str, store: Any, writer: str) -> None:
        self.url, self.store, self.writer = url, store, writer
        self.pool: Any = None
        self.checkpointer = Checkpointer(self._pool, store, writer, 600.0)

    async def _pool(self) -> Any:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=1)
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


def _cli(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch, *args: str) -> Any:
    mp.setenv("SPANVISOR_DATABASE_URL", url)
    mp.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    code = main(["audit", "verify", *args])
    return code, capsys.readouterr().out


def test_the_interval_setting_turns_checkpoints_off_with_zero() -> None:
    assert Config.load(env={}, extra=SETTINGS).get("audit_checkpoint_interval") == 600.0
    for off in ("0", "off", "none"):
        cfg = Config.load(env={"SPANVISOR_AUDIT_CHECKPOINT_INTERVAL": off}, extra=SETTINGS)
        assert cfg.get("audit_checkpoint_interval") is None
    cfg = Config.load(env={"SPANVISOR_AUDIT_CHECKPOINT_INTERVAL": "90s"}, extra=SETTINGS)
    assert cfg.get("audit_checkpoint_interval") == 90.0


def test_the_sink_checkpoints_each_new_head_once(
    pg_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spanvisor")
    url = pg_server.database()

    async def go() -> None:
        ctx = make_ctx(make_config(tmp_path, url, audit_checkpoint_interval=0.05))
        ctx.replica_id = "r1"
        sink = PostgresSink()
        await sink.start(ctx)
        other = Replica(url, ctx.state_store, "r2")
        try:
            cp = sink.checkpointer
            assert cp is not None

            def reached(seq: int) -> bool:
                return cp.last is not None and cp.last.seq == seq

            assert await sink.export(_decisions("cp-1", 3)) is SinkResult.SUCCESS
            await asyncio.to_thread(wait_until, lambda: reached(3), what="the checkpoint of link 3")
            links = await _links(url)
            assert await _checkpoints(url) == [(3, links[3])]
            head = await read_head(ctx.state_store)
            assert head is not None and (head.seq, head.hash) == (3, links[3])
            assert _lines(caplog) == [f"decision log head: link 3, sha256 {links[3]}"]

            # Nothing moved: nothing recorded, logged or published.
            assert await cp.tick() is None
            # Another replica on the same database: the same head, recorded and logged once.
            again = await other.checkpointer.tick()
            assert again is not None and again.seq == 3
            assert await _checkpoints(url) == [(3, links[3])] and len(_lines(caplog)) == 1

            assert await sink.export(_decisions("cp-1", 2, first=4)) is SinkResult.SUCCESS
            await asyncio.to_thread(wait_until, lambda: reached(5), what="the checkpoint of link 5")
            links = await _links(url)
            assert await _checkpoints(url) == [(3, links[3]), (5, links[5])]
            assert _lines(caplog)[1:] == [f"decision log head: link 5, sha256 {links[5]}"]
            rows = await fetch(url, "SELECT writer FROM decision_chain_checkpoints ORDER BY seq")
            assert {r["writer"] for r in rows} <= {"r1", "r2"}
            head = await read_head(ctx.state_store)
            assert head is not None and head.seq == 5
        finally:
            await other.close()
            await sink.shutdown(5)

    asyncio.run(go())


def test_no_checkpoints_when_the_interval_is_zero(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()

    async def go() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, url, audit_checkpoint_interval=None)))
        try:
            assert await sink.export(_decisions("cp-off", 2)) is SinkResult.SUCCESS
            assert await sink.force_flush(20)
            assert sink.checkpointer is None
        finally:
            await sink.shutdown(5)
        assert await _checkpoints(url) == []

    asyncio.run(go())


def test_a_failed_checkpoint_is_logged_once_and_tried_again(
    pg_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spanvisor")
    url = pg_server.database()

    async def go() -> None:
        replica = Replica(url, InMemoryStateStore(), "r1")
        try:
            await _sql(url, "ALTER TABLE decision_chain_checkpoints RENAME TO decision_chain_checkpoints_away")
            from .test_sink_basic import export_all

            await export_all(url, tmp_path, [_decisions("cp-fail", 2)])
            assert await replica.checkpointer.safe_tick() is None
            assert await replica.checkpointer.safe_tick() is None
            failed = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
            assert len(failed) == 1
            await _sql(url, "ALTER TABLE decision_chain_checkpoints_away RENAME TO decision_chain_checkpoints")
            head = await replica.checkpointer.safe_tick()
            assert head is not None and head.seq == 2
            assert any("work again" in r.getMessage() for r in caplog.records)
        finally:
            await replica.close()

    asyncio.run(go())


@settings(max_examples=25, deadline=None)
@given(
    writes=st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=12),
)
def test_the_published_head_never_moves_back(pg_url: str, writes: list[tuple[int, str]]) -> None:
    """Heads published by several writers in any order: the store holds the
    newest ever published, after every write."""
    config = make_config(Path("/nonexistent"), pg_url)

    async def go() -> None:
        store = await PostgresStateStore.open(config)
        try:
            await _sql(pg_url, "DELETE FROM delivery_state WHERE namespace = 'audit.chain'")  # a fresh start
            newest, by = 0, ""
            for seq, owner in writes:
                won = await advance(store, ChainHead(seq, f"{seq:064x}", seq), owner)
                # Written when newer, or the same head again by the writer that wrote it.
                assert won == (seq > newest or (seq == newest and owner == by))
                if won:
                    newest, by = seq, owner
                head = await read_head(store)
                assert head is not None and head.seq == newest and head.hash == f"{newest:064x}"
        finally:
            await store.close()

    asyncio.run(go())


# A rewrite of every link from k on, each with its new hash: the chain stays
# consistent, so only a head kept from before shows it.
_REWRITE = """
DO $$
DECLARE
    r human_interventions;
    prev text := COALESCE((SELECT row_hash FROM human_interventions WHERE chain_seq = {k} - 1),
                          spanvisor_intervention_genesis());
BEGIN
    FOR r IN SELECT * FROM human_interventions WHERE chain_seq >= {k} ORDER BY chain_seq LOOP
        r.comment := 'forged';
        r.prev_hash := prev;
        r.row_hash := spanvisor_intervention_hash(prev, r);
        UPDATE human_interventions SET comment = r.comment, prev_hash = r.prev_hash, row_hash = r.row_hash
         WHERE intervention_id = r.intervention_id;
        prev := r.row_hash;
    END LOOP;
END $$
"""
_UNGUARD = "ALTER TABLE human_interventions DISABLE TRIGGER human_interventions_unchanged"


def test_verify_checks_the_checkpoints_and_a_head_given(
    pg_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.database()
    from .test_sink_basic import export_all

    async def setup() -> dict[int, str]:
        replica = Replica(url, InMemoryStateStore(), "r1")
        try:
            await export_all(url, tmp_path, [_decisions("cp-v", 2)])
            await replica.checkpointer.tick()
            await export_all(url, tmp_path, [_decisions("cp-v", 2, first=3)])
            await replica.checkpointer.tick()
            return await _links(url)
        finally:
            await replica.close()

    links = asyncio.run(setup())
    code, out = _cli(url, tmp_path, capsys, monkeypatch)
    assert code == 0, out
    assert out.splitlines()[0] == (
        f"decision log intact: 4 links (4 rows); head 4 {links[4]}; passes through 2 checkpoints (newest: link 4)"
    )
    code, out = _cli(url, tmp_path, capsys, monkeypatch, "--head", f"3:{links[3].upper()}")
    assert code == 0, out
    assert out.splitlines()[0].endswith("passes through 2 checkpoints (newest: link 4) and the head given (link 3)")

    code, out = _cli(url, tmp_path, capsys, monkeypatch, "--head", f"4:{'0' * 64}")
    assert code == 1, out
    assert "link 4 no longer has the hash of the head given" in out
    code, out = _cli(url, tmp_path, capsys, monkeypatch, "--head", f"9:{links[4]}")
    assert code == 1 and "link 9 of the head given is no longer in the chain (it ends at link 4)" in out
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--head", "4-abc"])

    # The newest two links rewritten with their hashes: the chain holds, the checkpoint of link 4 does not.
    asyncio.run(_sql(url, _UNGUARD, _REWRITE.format(k=3)))
    assert not asyncio.run(_verdict_without_checkpoints(url)).problems  # the limit a chain has alone
    code, out = _cli(url, tmp_path, capsys, monkeypatch)
    assert code == 1, out
    assert "link 4 no longer has the hash of the checkpoint of " in out
    assert "the chain was rewritten from a link after 2 up to link 4" in out


async def _verdict_without_checkpoints(url: str) -> Any:
    """What verify says of the chain alone (the checkpoints removed, then put back)."""
    conn = await asyncpg.connect(url)
    try:
        tr = conn.transaction()
        await tr.start()
        await conn.execute("DELETE FROM decision_chain_checkpoints")
        verdict = await verify(conn)
        await tr.rollback()
        return verdict
    finally:
        await conn.close()


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(2, 6), data=st.data())
def test_a_rewrite_is_caught_by_a_checkpoint_that_covers_it(
    pg_server: Any, tmp_path: Path, rows: int, data: st.DataObject
) -> None:
    """Any number of decisions, a checkpoint after c of them, then every link
    from k on rewritten with its hash: verify names the checkpoint exactly
    when k <= c (the checkpoint covers the rewrite); the head kept after the
    last decision catches any k; without either the chain alone does not."""
    url = pg_server.database()
    from .test_sink_basic import export_all

    c = data.draw(st.integers(1, rows), label="checkpoint after")
    k = data.draw(st.integers(1, rows), label="rewritten from")
    erase = data.draw(st.booleans(), label="the checkpoints erased too")

    async def go() -> tuple[Any, Any, int, str]:
        replica = Replica(url, InMemoryStateStore(), "r1")
        try:
            await export_all(url, tmp_path, [_decisions("cp-p", c)])
            assert (await replica.checkpointer.tick()) is not None
            if rows > c:
                await export_all(url, tmp_path, [_decisions("cp-p", rows - c, first=c + 1)])
            kept = (await _links(url))[rows]
            await _sql(url, _UNGUARD, _REWRITE.format(k=k))
            if erase:
                await _sql(url, "DELETE FROM decision_chain_checkpoints")
            conn = await asyncpg.connect(url)
            try:
                from spanvisor_postgres.auditchain import KeptHead

                plain = await verify(conn)
                given_head = await verify(conn, KeptHead(rows, kept, "the head given"))
            finally:
                await conn.close()
            return plain, given_head, rows, kept
        finally:
            await replica.close()

    plain, with_head, _, _ = asyncio.run(go())
    caught = f"link {c} no longer has the hash of the checkpoint"
    if k <= c and not erase:
        assert plain.problems and plain.problems[0].startswith(caught), plain.problems
        assert with_head.problems[0].startswith(caught), with_head.problems  # the first kept head that fails
    else:
        assert not plain.problems, plain.problems
        assert with_head.problems and with_head.problems[0].startswith(
            f"link {rows} no longer has the hash of the head given"
        ), with_head.problems
