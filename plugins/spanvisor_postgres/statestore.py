"""The shared state store in PostgreSQL: claims that hold across replicas.

Each operation is one SQL statement, so two replicas claiming the same key
at the same moment are ordered by the row lock of ``INSERT … ON CONFLICT``:
exactly one wins. A claim is a lease: the winner has ``lease_s`` to ``put``
the result, after which another owner may take the key over (the owner
died). A key with a value is settled for good and every later claim returns
the value. ``put_if_owner`` settles it only for the owner of the claim, so a
slow owner whose lease was taken over learns that it lost. ``put_if_newer``
writes a versioned value only over an older version (the ``version`` column,
migration 0004), in the same single statement: an equal version loses,
whoever wrote it.

Built with ``await PostgresStateStore.open(config, shared)``; it shares the
sink's pool through ``shared`` (see :mod:`spanvisor_postgres.db`).

It is also a ``WatchableStateStore``: ``notify`` is a ``pg_notify`` on one
channel, ``watch`` listens on a connection of its own (made on first use,
made again after it is lost), so that a decision recorded by one replica
wakes the waiters of every other at once instead of at their next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from spanvisor.statestores.api import Change, Claim, apply_changes

from . import history
from .db import Database, close_listener, open_shared, release_shared, shared_pool

if TYPE_CHECKING:
    from spanvisor.config import Config


def _dump(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), default=str)


_CLAIM = """
INSERT INTO delivery_state AS s (namespace, key, owner, lease_expires, value, updated_at)
VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4), NULL, clock_timestamp())
ON CONFLICT (namespace, key) DO UPDATE
    SET owner = EXCLUDED.owner, lease_expires = EXCLUDED.lease_expires, updated_at = EXCLUDED.updated_at
    WHERE s.value IS NULL AND (s.owner = EXCLUDED.owner OR s.lease_expires <= clock_timestamp())
RETURNING true
"""

_PUT = """
INSERT INTO delivery_state AS s (namespace, key, owner, lease_expires, value, updated_at)
VALUES ($1, $2, $3, NULL, $4::jsonb, clock_timestamp())
ON CONFLICT (namespace, key) DO UPDATE
    SET owner = EXCLUDED.owner, lease_expires = NULL, value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
"""

# Settles the key only for its owner (or when unclaimed or the lease lapsed);
# the same owner putting the same value again (a retry after a lost answer)
# also returns a row. No row: another owner holds or settled the key.
_PUT_IF_OWNER = """
INSERT INTO delivery_state AS s (namespace, key, owner, lease_expires, value, updated_at)
VALUES ($1, $2, $3, NULL, $4::jsonb, clock_timestamp())
ON CONFLICT (namespace, key) DO UPDATE
    SET owner = EXCLUDED.owner, lease_expires = NULL, value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
    WHERE (s.value IS NULL AND (s.owner = EXCLUDED.owner OR s.lease_expires <= clock_timestamp()))
       OR (s.value = EXCLUDED.value AND s.owner = EXCLUDED.owner)
RETURNING true
"""

# A newer version only: of writers that read version n and write n + 1,
# whoever they are, the row lock orders them and exactly one finds n. With
# $6 (``own``) the owner of the stored version may also rewrite it. No row:
# the stored version is newer or equal.
_PUT_IF_NEWER = """
INSERT INTO delivery_state AS s (namespace, key, owner, lease_expires, value, updated_at, version)
VALUES ($1, $2, $3, NULL, $4::jsonb, clock_timestamp(), $5)
ON CONFLICT (namespace, key) DO UPDATE
    SET owner = EXCLUDED.owner, lease_expires = NULL, value = EXCLUDED.value,
        updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
    WHERE s.version IS NULL OR s.value IS NULL OR s.version < EXCLUDED.version
       OR ($6::boolean AND s.version = EXCLUDED.version AND s.owner = EXCLUDED.owner)
RETURNING true
"""

_GET = "SELECT value FROM delivery_state WHERE namespace = $1 AND key = $2"

# update_many, in one transaction: every absent key gets a row with no value
# first (what another writer inserts meanwhile waits for the commit and then
# finds the batch's version), then every key's row is locked and read, in
# one order, so no other writer comes between a read and its write.
_HOLD_MANY = """
INSERT INTO delivery_state (namespace, key, owner, lease_expires, value, updated_at)
SELECT ns, k, $3, NULL, NULL, clock_timestamp() FROM unnest($1::text[], $2::text[]) AS u(ns, k) ORDER BY ns, k
ON CONFLICT (namespace, key) DO NOTHING
RETURNING namespace, key
"""
_READ_MANY = """
SELECT s.namespace, s.key, s.value::text FROM delivery_state AS s
JOIN unnest($1::text[], $2::text[]) AS u(ns, k) ON s.namespace = u.ns AND s.key = u.k
ORDER BY s.namespace, s.key FOR UPDATE OF s
"""
# Written as a won put_if_newer writes; the rows held for a key no change
# wrote are removed again.
_WRITE_MANY = """
WITH w AS (
    UPDATE delivery_state AS s
    SET owner = $5, lease_expires = NULL, value = u.v::jsonb, updated_at = clock_timestamp(), version = u.ver
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(ns, k, v, ver)
    WHERE s.namespace = u.ns AND s.key = u.k
)
DELETE FROM delivery_state AS s USING unnest($6::text[], $7::text[]) AS u(ns, k)
WHERE s.namespace = u.ns AND s.key = u.k AND s.value IS NULL
"""

# One channel for every namespace; the payload is "<namespace>\n<key>".
CHANNEL = "spanvisor_state"
_NOTIFY = "SELECT pg_notify($1, $2)"
_NOTIFY_MANY = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p"
MAX_PAYLOAD = 7_900  # PostgreSQL refuses notification payloads of 8,000 bytes or more
log = logging.getLogger("spanvisor.postgres")

_RELEASE = "DELETE FROM delivery_state WHERE namespace = $1 AND key = $2 AND owner = $3 AND value IS NULL"


def _load(raw: Any) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {"value": value}


class PostgresStateStore:
    def __init__(self, db: Database, shared: dict[str, Any]) -> None:
        self._db = db
        self._shared = shared
        self._closed = False
        self._watchers: dict[str, list[Callable[[str], None]]] = {}
        self._listener: Any = None
        self._listening = asyncio.Lock()

    @classmethod
    async def open(cls, config: Config, shared: dict[str, Any] | None = None) -> PostgresStateStore:
        shared = {} if shared is None else shared
        return cls(await open_shared(config, shared), shared)

    async def _pool(self) -> Any:
        return await shared_pool(self._db, self._shared)

    def describe(self) -> str:
        """Where it is, as its setting names it (the URL masked): for the one
        line said when it does not answer."""
        if self._db.embedded is not None:
            return self._db.shown_url
        return f"PostgreSQL at {self._db.shown_url} (SPANVISOR_DATABASE_URL)"

    async def claim(self, namespace: str, key: str, owner: str, lease_s: float = 60.0) -> Claim:
        pool = await self._pool()
        async with pool.acquire() as conn:
            won = await conn.fetchval(_CLAIM, namespace, key, owner, float(lease_s))
            if won:
                return Claim(won=True)
            return Claim(won=False, value=_load(await conn.fetchval(_GET, namespace, key)))

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> None:
        pool = await self._pool()
        await pool.execute(_PUT, namespace, key, owner, _dump(value))

    async def put_if_owner(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> bool:
        pool = await self._pool()
        won = await pool.fetchval(_PUT_IF_OWNER, namespace, key, owner, _dump(value))
        return bool(won)

    async def put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, *, own: bool = False
    ) -> Claim:
        pool = await self._pool()
        async with pool.acquire() as conn:
            raw = _dump(value)
            if await conn.fetchval(_PUT_IF_NEWER, namespace, key, owner, raw, int(version), bool(own)):
                return Claim(won=True)
            return Claim(won=False, value=_load(await conn.fetchval(_GET, namespace, key)))

    async def update_many(self, updates: Sequence[tuple[str, str, Change]], owner: str) -> None:
        """:class:`~spanvisor.statestores.api.BatchStateStore`: many keys in
        five round trips (BEGIN, the absent keys held, every key locked and
        read, every change written, COMMIT) instead of a read and a write a key."""
        if not updates:
            return
        keys = sorted({(ns, key) for ns, key, _ in updates})
        namespaces, names = [k[0] for k in keys], [k[1] for k in keys]
        pool = await self._pool()
        async with pool.acquire() as conn, conn.transaction():
            held = {(r[0], r[1]) for r in await conn.fetch(_HOLD_MANY, namespaces, names, owner)}
            values: dict[tuple[str, str], Mapping[str, Any] | None] = {
                (r[0], r[1]): _load(r[2]) for r in await conn.fetch(_READ_MANY, namespaces, names)
            }
            changed = apply_changes(updates, values, _dump)
            unused = sorted(held - changed.keys())
            await conn.execute(
                _WRITE_MANY,
                [k[0] for k in changed],
                [k[1] for k in changed],
                [v[0] for v in changed.values()],
                [v[1] for v in changed.values()],
                owner,
                [k[0] for k in unused],
                [k[1] for k in unused],
            )

    async def recent_tasks(self, n: int, max_agents: int) -> dict[str, list[tuple[float, float, float]]]:
        """Each agent's last complete tasks (tokens, cost, duration), oldest
        first: the outlier book's history (spanvisor.budgets.outliers.TaskHistory)."""
        return await history.recent_tasks(await self._pool(), n, max_agents)

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        pool = await self._pool()
        return _load(await pool.fetchval(_GET, namespace, key))

    async def release(self, namespace: str, key: str, owner: str) -> None:
        pool = await self._pool()
        await pool.execute(_RELEASE, namespace, key, owner)

    async def notify(self, namespace: str, key: str) -> None:
        payload = f"{namespace}\n{key}"
        if len(payload.encode("utf-8", "surrogatepass")) < MAX_PAYLOAD:
            pool = await self._pool()
            await pool.execute(_NOTIFY, CHANNEL, payload)

    async def notify_many(self, namespace: str, keys: Sequence[str]) -> None:
        """:meth:`notify` of each key, in one statement."""
        payloads = [
            p for p in (f"{namespace}\n{key}" for key in keys) if len(p.encode("utf-8", "surrogatepass")) < MAX_PAYLOAD
        ]
        if payloads:
            pool = await self._pool()
            await pool.execute(_NOTIFY_MANY, CHANNEL, payloads)

    async def watch(self, namespace: str, on_change: Callable[[str], None]) -> bool:
        subscribers = self._watchers.setdefault(namespace, [])
        if on_change not in subscribers:
            subscribers.append(on_change)
        async with self._listening:
            if self._listener is not None and not self._listener.is_closed():
                return True
            if self._closed:
                return False
            conn: Any = None
            try:
                await self._pool()  # the URL (an embedded server's is known once it runs)
                conn = await asyncpg.connect(self._db.url, timeout=10.0)
                await conn.add_listener(CHANNEL, self._notified)
            except Exception as exc:  # unreachable, restarting: waiters poll meanwhile
                log.debug("cannot listen for state changes (waiters poll instead): %s", exc)
                if conn is not None:
                    conn.terminate()
                return False
            conn.add_termination_listener(self._lost)
            self._listener = conn
            return True

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        namespace, _, key = payload.partition("\n")
        for on_change in list(self._watchers.get(namespace, ())):
            try:
                on_change(key)
            except Exception as exc:  # one watcher's bug must not starve the others
                log.warning("a state-change watcher failed: %s", exc)

    def _lost(self, conn: Any) -> None:
        if self._listener is conn:
            self._listener = None  # the next watch() listens again

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            listener, self._listener = self._listener, None
            await close_listener(listener)
            await release_shared(self._db, self._shared)
