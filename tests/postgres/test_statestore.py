"""PostgresStateStore: claim semantics against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from spanvisor.statestores.api import StateStore
from spanvisor_postgres import PostgresSink
from spanvisor_postgres.db import POOL_KEY
from spanvisor_postgres.statestore import PostgresStateStore

from .conftest import make_config, make_ctx, run


def test_claim_put_get_release(db_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        store = await PostgresStateStore.open(make_config(tmp_path, db_url))
        assert isinstance(store, StateStore)
        try:
            assert (await store.claim("slack", "t1", "a")).won
            assert (await store.claim("slack", "t1", "a")).won  # the owner may renew
            lost = await store.claim("slack", "t1", "b")
            assert not lost.won and lost.value is None
            await store.put("slack", "t1", {"channel": "C1", "ts": "1.2"}, "a")
            settled = await store.claim("slack", "t1", "b")
            assert not settled.won and settled.value == {"channel": "C1", "ts": "1.2"}
            assert await store.get("slack", "t1") == {"channel": "C1", "ts": "1.2"}
            assert await store.get("slack", "nope") is None
            # release: only the owner's unsettled claim goes.
            assert (await store.claim("grafana", "t1", "a")).won
            await store.release("grafana", "t1", "b")
            assert not (await store.claim("grafana", "t1", "b")).won
            await store.release("grafana", "t1", "a")
            assert (await store.claim("grafana", "t1", "b")).won
            await store.release("slack", "t1", "a")  # settled: stays
            assert await store.get("slack", "t1") is not None
        finally:
            await store.close()

    run(main)


def test_lease_expires(db_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        store = await PostgresStateStore.open(make_config(tmp_path, db_url))
        try:
            assert (await store.claim("ns", "lease", "dead-owner", lease_s=0.2)).won
            assert not (await store.claim("ns", "lease", "b")).won
            await asyncio.sleep(0.3)
            assert (await store.claim("ns", "lease", "b")).won
            assert not (await store.claim("ns", "lease", "dead-owner")).won
        finally:
            await store.close()

    run(main)


def test_concurrent_claimers_exactly_one_wins(db_url: str, tmp_path: Path) -> None:
    # Two stores with their own pools stand for two replicas.
    async def main() -> None:
        a = await PostgresStateStore.open(make_config(tmp_path, db_url))
        b = await PostgresStateStore.open(make_config(tmp_path, db_url))
        try:
            for i in range(50):
                key = f"task-{i}"
                ra, rb = await asyncio.gather(a.claim("race", key, "A"), b.claim("race", key, "B"))
                assert ra.won != rb.won, (i, ra, rb)
        finally:
            await a.close()
            await b.close()

    run(main)


def test_sink_and_store_share_one_pool(db_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        ctx = make_ctx(make_config(tmp_path, db_url))
        store = await PostgresStateStore.open(ctx.config, ctx.shared)
        sink = PostgresSink()
        await sink.start(ctx)
        assert (await store.claim("x", "k", "me")).won
        pool: Any = ctx.shared[POOL_KEY]
        assert sink.writer is not None and sink.writer.pool is pool
        await sink.shutdown(5)
        # The store still works after the sink left: the pool is shared, not owned.
        assert await store.get("x", "k") is None
        await store.close()
        assert POOL_KEY not in ctx.shared

    run(main)
