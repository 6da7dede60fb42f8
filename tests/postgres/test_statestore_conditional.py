"""put_if_owner: only the owner of a claim settles it, in memory and in PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from spanvisor.statestores.api import ConditionalStateStore
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_postgres.statestore import PostgresStateStore

from .conftest import make_config, run


async def _check(store: ConditionalStateStore, wait_lease: float) -> None:
    assert isinstance(store, ConditionalStateStore)
    # The owner of the claim settles it; a retried put of the same value is harmless.
    assert (await store.claim("ns", "k1", "a")).won
    assert not await store.put_if_owner("ns", "k1", {"ts": "2.0"}, "b")
    assert await store.put_if_owner("ns", "k1", {"ts": "1.0"}, "a")
    assert await store.put_if_owner("ns", "k1", {"ts": "1.0"}, "a")
    # Settled: neither another value nor another owner overwrites it.
    assert not await store.put_if_owner("ns", "k1", {"ts": "3.0"}, "a")
    assert not await store.put_if_owner("ns", "k1", {"ts": "1.0"}, "b")
    assert await store.get("ns", "k1") == {"ts": "1.0"}
    # A key nobody claimed can be settled.
    assert await store.put_if_owner("ns", "k2", {"ts": None}, "a")
    assert await store.get("ns", "k2") == {"ts": None}
    # A lease taken over: the slow first owner loses, the new one wins.
    assert (await store.claim("ns", "k3", "slow", lease_s=0.1)).won
    await asyncio.sleep(wait_lease)
    assert (await store.claim("ns", "k3", "fast")).won
    assert not await store.put_if_owner("ns", "k3", {"ts": "slow"}, "slow")
    assert await store.put_if_owner("ns", "k3", {"ts": "fast"}, "fast")
    assert await store.get("ns", "k3") == {"ts": "fast"}
    # A lapsed lease nobody took over counts as no claim.
    assert (await store.claim("ns", "k4", "slow", lease_s=0.1)).won
    await asyncio.sleep(wait_lease)
    assert await store.put_if_owner("ns", "k4", {"ts": "late"}, "other")
    # The unconditional put still overwrites, for callers that mean it.
    await store.put("ns", "k4", {"ts": "again"}, "other")
    assert await store.get("ns", "k4") == {"ts": "again"}


def test_in_memory_put_if_owner() -> None:
    run(lambda: _check(InMemoryStateStore(), 0.15))


def test_postgres_put_if_owner(db_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        store = await PostgresStateStore.open(make_config(tmp_path, db_url))
        try:
            await _check(store, 0.15)
        finally:
            await store.close()

    run(main)
