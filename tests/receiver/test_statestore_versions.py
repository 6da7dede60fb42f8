"""put_if_newer: a versioned value is only ever replaced by a newer one, in
memory, in the local SQLite store and in PostgreSQL (the replicas' store);
an equal version only by its own writer, and only when it asks (``own``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from spanvisor.config import Config
from spanvisor.statestores.api import ConditionalStateStore
from spanvisor.statestores.local import LocalStateStore
from spanvisor.statestores.memory import InMemoryStateStore


async def _check(store: ConditionalStateStore) -> None:
    assert isinstance(store, ConditionalStateStore)
    put = store.put_if_newer
    # The first write of a key wins whatever its version.
    assert (await put("v", "t1", {"seq": 5}, 5, "a")).won
    # Older, or the same version by another owner: refused, and told what is stored.
    lost = await put("v", "t1", {"seq": 3}, 3, "b")
    assert not lost.won and lost.value == {"seq": 5}
    assert not (await put("v", "t1", {"seq": 5, "by": "b"}, 5, "b")).won
    # An equal version loses whoever writes it, its own writer too: two
    # coroutines of one process that read n and write n + 1 never both win.
    same = await put("v", "t1", {"seq": 5, "again": True}, 5, "a")
    assert not same.won and same.value == {"seq": 5}
    # Unless the owner asks to rewrite its own version in place (own=True):
    # another owner still cannot.
    assert not (await put("v", "t1", {"seq": 5, "by": "b"}, 5, "b", own=True)).won
    assert (await put("v", "t1", {"seq": 5, "shown": True}, 5, "a", own=True)).won
    assert await store.get("v", "t1") == {"seq": 5, "shown": True}
    # Newer from anyone wins; then the old owner's own version is older.
    assert (await put("v", "t1", {"seq": 9}, 9, "b")).won
    refused = await put("v", "t1", {"seq": 5, "shown": True}, 5, "a", own=True)
    assert not refused.won and refused.value == {"seq": 9}
    assert await store.get("v", "t1") == {"seq": 9}
    # Keys are independent; large versions fit (final views rank above 2**56).
    assert (await put("v", "t2", {"final": True}, 1 << 56, "a")).won
    assert not (await put("v", "t2", {"final": False}, (1 << 56) - 1, "b")).won
    # Concurrent writers: exactly the highest version survives.
    await asyncio.gather(*(put("v", "t3", {"n": n}, n, f"w{n}") for n in range(20)))
    assert await store.get("v", "t3") == {"n": 19}


def _run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(fn(), 60))


def test_in_memory() -> None:
    _run(lambda: _check(InMemoryStateStore()))


def test_local_store(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalStateStore(tmp_path / "state.db")
        await store.start()
        try:
            await _check(store)
        finally:
            await store.close()

    _run(main)


def test_local_store_adds_the_column_to_an_old_file(tmp_path: Path) -> None:
    """A state.db written before versions existed opens and takes them."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE state (namespace TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL,"
        " lease_expires REAL, value TEXT, updated_at REAL NOT NULL, PRIMARY KEY (namespace, key))"
    )
    conn.execute("INSERT INTO state VALUES ('slack.parent', 'T1', 'old', NULL, '{\"ts\": \"1.0\"}', ?)", (time.time(),))
    conn.commit()
    conn.close()

    async def main() -> None:
        store = LocalStateStore(path)
        await store.start()
        try:
            assert await store.get("slack.parent", "T1") == {"ts": "1.0"}
            await _check(store)
        finally:
            await store.close()

    _run(main)


def test_postgres_store(pg_server: Any, tmp_path: Path) -> None:
    from spanvisor_postgres.settings import SETTINGS
    from spanvisor_postgres.statestore import PostgresStateStore

    url = pg_server.database()
    config = Config.load(env={}, extra=SETTINGS).with_values(data_dir=str(tmp_path), database_url=url)

    async def main() -> None:
        store = await PostgresStateStore.open(config)
        try:
            await _check(store)
        finally:
            await store.close()

    _run(main)


def test_put_own_serves_a_store_from_before_own() -> None:
    """A third party's store whose put_if_newer takes no ``own`` keyword is
    called without it (it let an owner rewrite its own version anyway)."""
    from spanvisor.statestores.api import Claim, put_own

    calls: list[tuple[Any, ...]] = []

    async def old(namespace: str, key: str, value: Any, version: int, owner: str) -> Claim:
        calls.append((namespace, key, version, owner))
        return Claim(won=True)

    async def new(namespace: str, key: str, value: Any, version: int, owner: str, *, own: bool = False) -> Claim:
        calls.append((namespace, key, version, owner, own))
        return Claim(won=True)

    async def main() -> None:
        assert (await put_own(old, "n", "k", {}, 3, "me")).won
        assert (await put_own(new, "n", "k", {}, 3, "me")).won

    _run(main)
    assert calls == [("n", "k", 3, "me"), ("n", "k", 3, "me", True)]


def test_the_memory_store_reads_back_what_the_local_store_does_and_holds_nothing_the_collector_walks(
    tmp_path: Path,
) -> None:
    """A value reads back from memory as from SQLite (a tuple as a list, a
    key as text, a new dict at every read), and an entry, claimed or
    settled, is no object the collector tracks (issue 70: two keys a run,
    up to 100,000, walked in every full collection of an agent's process)."""
    import gc

    value: dict[str, Any] = {"runs": [("r1", 5)], "v": 1, "nested": {"k": (1, 2)}}

    async def main() -> None:
        memory = InMemoryStateStore()
        local = LocalStateStore(tmp_path / "state.db")
        await local.start()
        try:
            for store in (memory, local):
                await store.put("runs", "t1", value, "a")
                assert (await store.put_if_newer("decisions", "t1-r1", value, 1, "a")).won
                assert (await store.claim("slack.parent", "t1", "a")).won
            for ns, key in (("runs", "t1"), ("decisions", "t1-r1")):
                got = await memory.get(ns, key)
                assert got == await local.get(ns, key) == {"runs": [["r1", 5]], "v": 1, "nested": {"k": [1, 2]}}
                assert got is not await memory.get(ns, key)
            # An equal value by its owner is the same value, as in SQLite.
            assert await memory.put_if_owner("runs", "t1", {"v": 1, "runs": [["r1", 5]], "nested": {"k": [1, 2]}}, "a")
            assert await local.put_if_owner("runs", "t1", {"v": 1, "runs": [["r1", 5]], "nested": {"k": [1, 2]}}, "a")
        finally:
            await local.close()
        gc.collect()
        entries = list(memory._entries.values())
        assert len(entries) == 3 and not any(gc.is_tracked(e) for e in entries)

    _run(main)
