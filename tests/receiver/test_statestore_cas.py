"""Compare-and-set is linearisable in every state store (memory, local SQLite,
PostgreSQL), whoever the writers are.

Writers read a key at version n and write n + 1 with ``put_if_newer``, all
at once, from one owner (the coroutines of one process: the control log
writes every record as one owner) or from several (replicas). Whatever the
interleaving hypothesis picks:

* versions won are distinct, and the stored version counts the wins;
* the stored value's history is exactly the winners, in version order (no
  write that was answered as won is missing, none answered as lost is in);
* writers that retry until they win all get in, once each (no lost update),
  through the stores directly and through :class:`ControlLog.update` (one
  log per process, two logs sharing a store as two replicas).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.config import Config
from spanvisor.control.log import ControlLog
from spanvisor.statestores.api import ConditionalStateStore
from spanvisor.statestores.local import LocalStateStore
from spanvisor.statestores.memory import InMemoryStateStore

_keys = itertools.count()
NS = "cas"


@dataclass(frozen=True)
class Plan:
    # Per writer: which owner it writes as, which store (replica) it uses,
    # and how long it pauses between its read and its write.
    owners: tuple[int, ...]
    replicas: tuple[int, ...]
    pauses: tuple[float, ...]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(2, 12))
    one_owner = draw(st.booleans())
    owners = tuple(0 if one_owner else draw(st.integers(0, 3)) for _ in range(n))
    replicas = tuple(draw(st.integers(0, 1)) for _ in range(n))
    pauses = tuple(draw(st.sampled_from((0.0, 0.0, 0.0005, 0.002))) for _ in range(n))
    return Plan(owners, replicas, pauses)


def _history(raw: Mapping[str, Any] | None) -> tuple[int, list[int]]:
    if raw is None:
        return 0, []
    return int(raw["n"]), [int(x) for x in raw["by"]]


async def _once(store: ConditionalStateStore, key: str, me: int, owner: str, pause: float) -> int | None:
    """Read n, write n + 1 with this writer added: the version won, or None."""
    n, by = _history(await store.get(NS, key))
    await asyncio.sleep(pause)
    won = await store.put_if_newer(NS, key, {"n": n + 1, "by": [*by, me]}, n + 1, owner)
    return n + 1 if won.won else None


async def _until_won(store: ConditionalStateStore, key: str, me: int, owner: str, pause: float) -> int:
    while True:
        got = await _once(store, key, me, owner, pause)
        if got is not None:
            return got
        await asyncio.sleep(0)


async def check_plan(stores: Sequence[ConditionalStateStore], plan: Plan) -> None:
    def writers(fn: Callable[..., Awaitable[Any]], key: str) -> list[Awaitable[Any]]:
        return [
            fn(stores[plan.replicas[i] % len(stores)], key, i, f"owner{plan.owners[i]}", plan.pauses[i])
            for i in range(len(plan.owners))
        ]

    # One round, no retries: the winners are exactly the history.
    key = f"k{next(_keys)}"
    got = await asyncio.gather(*writers(_once, key))
    won = {v: i for i, v in enumerate(got) if v is not None}
    assert len(won) == sum(v is not None for v in got), f"a version won twice: {got}"
    n, by = _history(await stores[0].get(NS, key))
    assert n == len(won) >= 1
    assert by == [won[v] for v in sorted(won)], (by, got)

    # Every writer retries until it wins: each is in once, nothing lost.
    key = f"k{next(_keys)}"
    versions = await asyncio.gather(*writers(_until_won, key))
    n, by = _history(await stores[-1].get(NS, key))
    assert sorted(versions) == list(range(1, len(plan.owners) + 1))
    assert n == len(plan.owners) and sorted(by) == list(range(len(plan.owners)))
    assert by == [i for _, i in sorted(zip(versions, range(len(versions)), strict=True))]


async def check_log(stores: Sequence[ConditionalStateStore], plan: Plan) -> None:
    """The control log's update: every change applied once, each answered
    with the write that happened (one log per replica)."""
    logs = [ControlLog(s, owner="replica") for s in stores]
    key = f"log{next(_keys)}"

    def add(me: int) -> Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, int]]:
        def change(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, int]:
            by = list((value or {}).get("by") or [])
            return {"by": [*by, me]}, len(by)

        return change

    got = await asyncio.gather(
        *(logs[plan.replicas[i] % len(logs)].update(NS, key, add(i)) for i in range(len(plan.owners)))
    )
    stored = await stores[0].get(NS, key)
    assert stored is not None
    by = list(stored["by"])
    assert sorted(by) == list(range(len(plan.owners))) and stored["v"] == len(plan.owners)
    # Each update was answered with its place in the record.
    assert [by[place] for place in got] == list(range(len(plan.owners)))


def _drive(
    loop: asyncio.AbstractEventLoop, stores: Sequence[ConditionalStateStore], examples: int
) -> Callable[[], None]:
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(plan=plans())
    def prop(plan: Plan) -> None:
        loop.run_until_complete(asyncio.wait_for(check_plan(stores, plan), 60))
        loop.run_until_complete(asyncio.wait_for(check_log(stores, plan), 60))

    return prop


def test_in_memory_store_is_linearisable() -> None:
    loop = asyncio.new_event_loop()
    try:
        store = InMemoryStateStore()
        _drive(loop, [store], 60)()
    finally:
        loop.close()


def test_local_store_is_linearisable(tmp_path: Path) -> None:
    """Two LocalStateStores on one file are two processes on one host."""
    loop = asyncio.new_event_loop()
    stores = [LocalStateStore(tmp_path / "state.db"), LocalStateStore(tmp_path / "state.db")]
    try:
        for s in stores:
            loop.run_until_complete(s.start())
        _drive(loop, stores, 30)()
    finally:
        for s in stores:
            loop.run_until_complete(s.close())
        loop.close()


def test_postgres_store_is_linearisable(pg_server: Any, tmp_path: Path) -> None:
    """Two PostgresStateStores (two pools) on one database are two replicas."""
    from spanvisor_postgres.settings import SETTINGS
    from spanvisor_postgres.statestore import PostgresStateStore

    url = pg_server.database()
    config = Config.load(env={}, extra=SETTINGS).with_values(data_dir=str(tmp_path), database_url=url)
    loop = asyncio.new_event_loop()
    stores: list[ConditionalStateStore] = []
    try:
        for _ in range(2):
            stores.append(loop.run_until_complete(PostgresStateStore.open(config, {})))
        _drive(loop, stores, 20)()
    finally:
        for s in stores:
            loop.run_until_complete(s.close())
        loop.close()


def test_in_memory_store_is_linearisable_across_threads() -> None:
    """Pipelines of one process (each its own thread and loop) may share the
    in-memory store: their control logs lose no update to each other."""
    import threading

    store = InMemoryStateStore()
    key = f"threads{next(_keys)}"

    def bump(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        return {"n": int((value or {}).get("n", 0)) + 1}, None

    def worker() -> None:
        log = ControlLog(store, owner="thread")

        async def go() -> None:
            await asyncio.gather(*(log.update(NS, key, bump) for _ in range(200)))

        asyncio.run(go())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = asyncio.run(store.get(NS, key))
    assert got is not None and got["n"] == 600 and got["v"] == 600
