"""The local state store: the StateStore contract in a SQLite file, and how
`serve` chooses it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from spanvisor.config import Config
from spanvisor.receiver.serve import serve_config
from spanvisor.statestores.api import Claim, ConditionalStateStore, StateStore, load_state_store_factory
from spanvisor.statestores.local import PRUNE_EVERY_S, RETENTION_S, LocalStateStore


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(fn())  # type: ignore[arg-type]


async def _open(path: Path, clock: ManualClock) -> LocalStateStore:
    store = LocalStateStore(path, clock=clock)
    await store.start()
    return store


def test_protocols_and_entry_point(tmp_path: Path) -> None:
    async def main() -> None:
        config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=[])
        store = await load_state_store_factory("local").open(config, {})
        try:
            assert isinstance(store, StateStore) and isinstance(store, ConditionalStateStore)
            assert (tmp_path / "state.db").is_file()
        finally:
            await store.close()

    run(main)


def test_claim_put_get_release(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        store = await _open(tmp_path / "s.db", clock)
        try:
            assert (await store.claim("ns", "k", "a")).won
            assert (await store.claim("ns", "k", "a")).won  # the owner takes its own claim back
            lost = await store.claim("ns", "k", "b")
            assert not lost.won and lost.value is None
            await store.release("ns", "k", "b")  # not b's: nothing happens
            assert not (await store.claim("ns", "k", "b")).won
            await store.release("ns", "k", "a")
            assert (await store.claim("ns", "k", "b")).won
            await store.put("ns", "k", {"channel": "C1", "ts": "1.0"}, "b")
            settled = await store.claim("ns", "k", "c")
            assert not settled.won and settled.value == {"channel": "C1", "ts": "1.0"}
            await store.release("ns", "k", "b")  # a settled key is never released
            assert await store.get("ns", "k") == {"channel": "C1", "ts": "1.0"}
            assert await store.get("ns", "other") is None
            assert await store.get("other-ns", "k") is None
        finally:
            await store.close()

    run(main)


def test_put_if_owner_and_leases(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        store = await _open(tmp_path / "s.db", clock)
        try:
            assert (await store.claim("ns", "k1", "a")).won
            assert not await store.put_if_owner("ns", "k1", {"ts": "2.0"}, "b")
            assert await store.put_if_owner("ns", "k1", {"ts": "1.0"}, "a")
            assert await store.put_if_owner("ns", "k1", {"ts": "1.0"}, "a")  # a retried put
            assert not await store.put_if_owner("ns", "k1", {"ts": "3.0"}, "a")
            assert not await store.put_if_owner("ns", "k1", {"ts": "1.0"}, "b")
            assert await store.get("ns", "k1") == {"ts": "1.0"}
            assert await store.put_if_owner("ns", "k2", {"ts": None}, "a")  # nobody claimed it
            # A lease taken over: the slow first owner loses, the new one wins.
            assert (await store.claim("ns", "k3", "slow", lease_s=10)).won
            clock.now += 9
            assert not (await store.claim("ns", "k3", "fast")).won
            clock.now += 2
            assert (await store.claim("ns", "k3", "fast")).won
            assert not await store.put_if_owner("ns", "k3", {"ts": "slow"}, "slow")
            assert await store.put_if_owner("ns", "k3", {"ts": "fast"}, "fast")
            # A lapsed lease nobody took over counts as no claim.
            assert (await store.claim("ns", "k4", "slow", lease_s=10)).won
            clock.now += 11
            assert await store.put_if_owner("ns", "k4", {"ts": "late"}, "other")
            await store.put("ns", "k4", {"ts": "again"}, "other")
            assert await store.get("ns", "k4") == {"ts": "again"}
        finally:
            await store.close()

    run(main)


def test_outlives_the_process_and_is_shared_on_one_host(tmp_path: Path) -> None:
    """What one store settled, another on the same file sees; of many
    claimers across two stores, exactly one wins."""

    async def main() -> None:
        clock = ManualClock()
        first = await _open(tmp_path / "s.db", clock)
        await first.put("slack.parent", "T1", {"channel": "C1", "ts": "1.0"}, "replica-a")
        # No close: as after a SIGKILL, the committed put is all there is.
        second = await _open(tmp_path / "s.db", clock)
        try:
            claim = await second.claim("slack.parent", "T1", "replica-a")
            assert not claim.won and claim.value == {"channel": "C1", "ts": "1.0"}
            claims = await asyncio.gather(
                *(
                    store.claim("slack.parent", "T2", f"owner-{n}-{i}")
                    for i in range(20)
                    for n, store in enumerate((first, second))
                )
            )
            assert sum(c.won for c in claims) == 1
        finally:
            await first.close()
            await second.close()

    run(main)


def test_old_keys_are_pruned(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        store = await _open(tmp_path / "s.db", clock)
        try:
            await store.put("ns", "old", {"v": 1}, "a")
            assert (await store.claim("ns", "old-claim", "a", lease_s=60)).won
            clock.now += RETENTION_S - 10
            await store.put("ns", "young", {"v": 2}, "a")
            clock.now += 20  # past the retention of "old", not of "young"
            await store.claim("ns", "trigger", "a")  # pruning runs with the store's calls
            assert await store.get("ns", "old") is None
            assert (await store.claim("ns", "old-claim", "b")).won  # its lease lapsed long ago, and it is gone
            assert await store.get("ns", "young") == {"v": 2}
        finally:
            await store.close()

    run(main)


def test_a_prune_rolled_back_is_not_put_off(tmp_path: Path) -> None:
    """A prune is part of the transaction of the call that ran it: when that
    transaction rolls back (a call of its batch failed, or the call itself),
    the prune is undone, and the next call prunes again instead of an hour later."""

    def bad(conn: Any) -> None:
        conn.execute("SELECT * FROM no_such_table")

    async def main() -> None:
        clock = ManualClock()
        store = await _open(tmp_path / "s.db", clock)

        def prune_then_fail(conn: Any) -> None:
            store._maybe_prune(conn)
            bad(conn)

        try:
            await store.put("ns", "old", {"v": 1}, "a")
            clock.now += RETENTION_S + 10
            # Alone: a call that prunes, then fails.
            with pytest.raises(sqlite3.OperationalError):
                await store._call(prune_then_fail)
            assert await store.get("ns", "old") == {"v": 1}  # rolled back with it
            assert (await store.claim("ns", "next", "a")).won
            assert await store.get("ns", "old") is None

            # In a batch: the store's thread held while a claim (which prunes)
            # and a failing call queue up, so they run in one transaction.
            await store.put("ns", "old2", {"v": 2}, "a")
            clock.now += RETENTION_S + PRUNE_EVERY_S + 10
            gate = threading.Event()
            held = asyncio.ensure_future(store._call(lambda conn: gate.wait(5)))
            while store._ops.qsize():
                await asyncio.sleep(0.01)
            claim = asyncio.ensure_future(store.claim("ns", "next2", "a"))
            failing = asyncio.ensure_future(store._call(bad))
            await asyncio.sleep(0.05)
            gate.set()
            got = await asyncio.gather(held, claim, failing, return_exceptions=True)
            assert isinstance(got[1], Claim) and got[1].won
            assert isinstance(got[2], sqlite3.OperationalError)
            # The batch rolled back (and its prune); the claim alone pruned again.
            assert await store.get("ns", "old2") is None
        finally:
            await store.close()

    run(main)


def test_serve_chooses_the_local_store_without_postgres(tmp_path: Path) -> None:
    def choice(**env: str) -> str:
        config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path), **env})
        return str(serve_config(config)["state_store"])

    assert choice(SPANVISOR_SINKS="slack,console") == "local"
    assert choice(SPANVISOR_SINKS="auto", SPANVISOR_EMBEDDED_DB="false") == "local"
    # The PostgreSQL sink runs: 'auto' stays, and the pipeline takes its shared store.
    assert choice(SPANVISOR_SINKS="slack,postgres") == "auto"
    assert choice(SPANVISOR_SINKS="auto", SPANVISOR_DATABASE_URL="postgresql://db/x") == "auto"
    assert choice(SPANVISOR_SINKS="auto") == "auto"  # serve turns the embedded database on
    # An explicit choice stays.
    assert choice(SPANVISOR_SINKS="slack", SPANVISOR_STATE_STORE="memory") == "memory"
    assert choice(SPANVISOR_SINKS="slack", SPANVISOR_STATE_STORE="postgres") == "postgres"


def test_the_pipeline_opens_the_chosen_store(tmp_path: Path) -> None:
    """serve's choice reaches the sinks: a Pipeline with state_store=local hands
    them the local store in its data dir."""
    from spanvisor.pipeline.pipeline import Pipeline
    from spanvisor.testing import InMemorySink

    config = serve_config(Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path), "SPANVISOR_SINKS": "console"}))
    sink = InMemorySink()
    pipeline = Pipeline(config=config, sinks=[sink], path="receiver").start()
    try:
        assert pipeline.wait_ready(20)
        assert sink.ctx is not None and isinstance(sink.ctx.state_store, LocalStateStore)
        assert (tmp_path / "state.db").is_file()
    finally:
        pipeline.shutdown(5)


def test_calls_queued_together_answer_as_one_at_a_time(tmp_path: Path) -> None:
    """Calls queued meanwhile run in one transaction: the same answers as one
    by one, in order, and a call that fails fails alone."""

    async def main() -> None:
        store = await _open(tmp_path / "s.db", ManualClock())
        try:
            bad = store._call(lambda conn: conn.execute("SELECT * FROM no_such_table"))
            claims = [store.claim("ns", "same", f"owner{i}") for i in range(50)]
            puts = [store.put_if_newer("v", f"k{i % 10}", {"i": i}, i, "o") for i in range(100)]
            got = await asyncio.gather(bad, *claims, *puts, return_exceptions=True)
            assert isinstance(got[0], Exception)  # that call only
            won = [c.won for c in got[1:51]]
            assert won == [True] + [False] * 49  # the first in the queue, as one by one
            assert all(c.won for c in got[51:])  # each a newer version than the last of its key
            for k in range(10):
                assert await store.get("v", f"k{k}") == {"i": 90 + k}
        finally:
            await store.close()

    run(main)
