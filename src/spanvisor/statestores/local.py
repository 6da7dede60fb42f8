"""The local state store: claims and their results in one SQLite file.

``spanvisor serve`` without PostgreSQL keeps its state store here, in its
data directory, instead of in memory. A Slack parent's ``(channel, ts)`` and
a Grafana annotation's id then outlive the process: a restart, graceful or
SIGKILL, adopts what was posted instead of posting it again. Several
processes on one host may share the file (SQLite locks it); replicas on
different hosts need the PostgreSQL store.

The semantics are those of :class:`spanvisor.statestores.memory.InMemoryStateStore`
and the PostgreSQL store: a claim is a lease (wall-clock time, so it
survives a restart), a key with a value is settled, ``put_if_owner`` settles
only for the claim's owner, ``put_if_newer`` writes only a newer version.
Every SQLite call runs on one thread of its own (one connection, calls in
order), never on the caller's event loop.

Settled keys are kept for :data:`RETENTION_S` after their last write, then
pruned (at open and every :data:`PRUNE_EVERY_S`), so the file stays small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from spanvisor.statestores.api import Change, Claim, apply_changes, value_of, value_text

if TYPE_CHECKING:
    from spanvisor.config import Config

log = logging.getLogger("spanvisor.statestores.api")
T = TypeVar("T")

FILE_NAME = "state.db"
# A task's keys must outlive the task: a week covers long tasks and the
# span journal's replay window many times over.
RETENTION_S = 7 * 24 * 3600.0
PRUNE_EVERY_S = 3600.0
# Calls queued together that run in one transaction (LocalStateStore._serve).
MAX_BATCH = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_expires REAL,
    value TEXT,
    updated_at REAL NOT NULL,
    version INTEGER,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS state_updated ON state (updated_at);
"""
# Files written before put_if_newer existed have no version column.
_ADD_VERSION = "ALTER TABLE state ADD COLUMN version INTEGER"
_ROW = "SELECT owner, lease_expires, value FROM state WHERE namespace = ? AND key = ?"
_UPSERT = (
    "INSERT INTO state (namespace, key, owner, lease_expires, value, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (namespace, key) DO UPDATE SET owner = excluded.owner, lease_expires = excluded.lease_expires,"
    " value = excluded.value, updated_at = excluded.updated_at, version = excluded.version"
)

# Many keys in one statement each way (a JSON array of rows in, one out):
# one SQLite step each, so the store's thread waits for the GIL twice a
# batch instead of twice a key.
_READ_MANY = (
    "SELECT json_group_array(json_array(s.namespace, s.key, s.value)) FROM json_each(?) AS w"
    " JOIN state AS s ON s.namespace = json_extract(w.value, '$[0]') AND s.key = json_extract(w.value, '$[1]')"
)
_WRITE_MANY = (
    "INSERT INTO state (namespace, key, owner, lease_expires, value, updated_at, version)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), NULL,"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each(?) WHERE true"
    " ON CONFLICT (namespace, key) DO UPDATE SET owner = excluded.owner, lease_expires = NULL,"
    " value = excluded.value, updated_at = excluded.updated_at, version = excluded.version"
)


class LocalStateStore:
    """A :class:`~spanvisor.statestores.api.ConditionalStateStore` in a SQLite file."""

    # update_many is one transaction on this store's one thread: a caller's
    # read-modify-write of a key is cheaper through it than a read and a
    # compare-and-set (two trips to the thread, and retries under contention).
    single_writer = True

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._ops: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0
        # When the open transaction pruned: the next prune is due an hour
        # from then only once it commits (a batch rolled back undid the
        # prune too, and must not put the next one off for an hour).
        self._pruned_at: float | None = None

    @classmethod
    async def open(cls, config: Config, shared: dict[str, Any] | None = None) -> LocalStateStore:
        """The ``spanvisor.state_stores`` factory: ``<data dir>/state.db``."""
        store = cls(Path(config.data_dir) / FILE_NAME)
        await store.start()
        return store

    async def start(self) -> None:
        if self._thread is not None:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="spanvisor-state-store", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)  # the file opened, or why not
        await self._call(self._prune)

    # --- the store's thread ---------------------------------------------------

    def _serve(self, ready: Future[None]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed claim survives a killed process.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Another process on the same file holds the write lock briefly.
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            if "version" not in {row[1] for row in conn.execute("PRAGMA table_info(state)")}:
                conn.execute(_ADD_VERSION)
        except Exception as exc:
            ready.set_exception(exc)
            self._thread = None
            return
        ready.set_result(None)
        try:
            stop = False
            while not stop and (op := self._ops.get()) is not None:
                batch = [op]
                # The calls queued meanwhile, in one transaction: each BEGIN
                # and COMMIT lets go of the GIL, and under load this thread
                # waits for it each time (runs' facts fell behind by tens of
                # thousands on a busy serve).
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:  # closing: after what came before it
                        stop = True
                        break
                    batch.append(more)
                ops = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
                if len(ops) > 1 and self._run_together(conn, ops):
                    continue
                for fn, fut in ops:
                    self._run_alone(conn, fn, fut)
        finally:
            conn.close()

    def _run_together(
        self, conn: sqlite3.Connection, ops: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]]
    ) -> bool:
        """All of ``ops`` in one transaction; False (nothing written, nothing
        answered) when one raised: then each runs alone, as it would have."""
        results = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _ in ops:
                results.append(fn(conn))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._settle(committed=False)
            return False
        self._settle(committed=True)
        for (_, fut), result in zip(ops, results, strict=True):
            fut.set_result(result)
        return True

    def _run_alone(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any], fut: Future[Any]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._settle(committed=False)
            fut.set_exception(exc)
        else:
            self._settle(committed=True)
            fut.set_result(result)

    def _settle(self, committed: bool) -> None:
        if self._pruned_at is not None and committed:
            self._next_prune = self._pruned_at + PRUNE_EVERY_S
        self._pruned_at = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise RuntimeError("the local state store is not open")
        fut: Future[T] = Future()
        self._ops.put((fn, fut))
        return await asyncio.wrap_future(fut)

    def _prune(self, conn: sqlite3.Connection) -> int:
        now = self._clock()
        self._pruned_at = now
        # Settled keys by age; unsettled claims only once their lease is long gone too.
        cur = conn.execute(
            "DELETE FROM state WHERE updated_at < ? AND (value IS NOT NULL OR lease_expires < ?)",
            (now - RETENTION_S, now),
        )
        return cur.rowcount

    def _maybe_prune(self, conn: sqlite3.Connection) -> None:
        if self._pruned_at is None and self._clock() >= self._next_prune:
            n = self._prune(conn)
            if n:
                log.info("local state store: pruned %d keys older than %.0f days", n, RETENTION_S / 86400)

    # --- the StateStore protocol ---------------------------------------------

    async def claim(self, namespace: str, key: str, owner: str, lease_s: float = 60.0) -> Claim:
        def op(conn: sqlite3.Connection) -> Claim:
            self._maybe_prune(conn)
            now = self._clock()
            row = conn.execute(_ROW, (namespace, key)).fetchone()
            if row is not None:
                if row[2] is not None:
                    return Claim(won=False, value=value_of(row[2]))
                if row[0] != owner and row[1] is not None and row[1] > now:
                    return Claim(won=False)
            conn.execute(_UPSERT, (namespace, key, owner, now + lease_s, None, now, None))
            return Claim(won=True)

        return await self._call(op)

    async def put(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> None:
        raw = value_text(value)
        await self._call(lambda conn: conn.execute(_UPSERT, (namespace, key, owner, None, raw, self._clock(), None)))

    async def put_if_owner(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> bool:
        raw = value_text(value)

        def op(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            row = conn.execute(_ROW, (namespace, key)).fetchone()
            if row is not None:
                if row[2] is not None:
                    # Settled: only the same owner's same value (a retried put) answers True.
                    return bool(row[0] == owner and value_of(row[2]) == value_of(raw))
                if row[0] != owner and row[1] is not None and row[1] > now:
                    return False
            conn.execute(_UPSERT, (namespace, key, owner, None, raw, now, None))
            return True

        return await self._call(op)

    async def put_if_newer(
        self, namespace: str, key: str, value: Mapping[str, Any], version: int, owner: str, *, own: bool = False
    ) -> Claim:
        raw = value_text(value)

        def op(conn: sqlite3.Connection) -> Claim:
            row = conn.execute(
                "SELECT owner, version, value FROM state WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
            newer = row is not None and row[1] is not None and row[2] is not None
            if newer and (row[1] > version or (row[1] == version and not (own and row[0] == owner))):
                return Claim(won=False, value=value_of(row[2]))
            conn.execute(_UPSERT, (namespace, key, owner, None, raw, self._clock(), version))
            return Claim(won=True)

        return await self._call(op)

    async def update_many(self, updates: Sequence[tuple[str, str, Change]], owner: str) -> None:
        """:class:`~spanvisor.statestores.api.BatchStateStore`: every key read
        in one statement and every change written in one, so a batch waits
        for the GIL a few times, not a few times a key."""
        if not updates:
            return
        wanted = json.dumps(sorted({(ns, key) for ns, key, _ in updates}))

        def op(conn: sqlite3.Connection) -> None:
            (rows,) = conn.execute(_READ_MANY, (wanted,)).fetchone()
            values: dict[tuple[str, str], Mapping[str, Any] | None] = {
                (ns, key): value_of(raw) for ns, key, raw in json.loads(rows)
            }
            changed = apply_changes(updates, values, value_text)
            if changed:
                now = self._clock()
                rows_out = [[ns, key, owner, raw, now, version] for (ns, key), (raw, version) in changed.items()]
                conn.execute(_WRITE_MANY, (json.dumps(rows_out),))

        await self._call(op)

    async def get(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        def op(conn: sqlite3.Connection) -> Mapping[str, Any] | None:
            row = conn.execute("SELECT value FROM state WHERE namespace = ? AND key = ?", (namespace, key)).fetchone()
            return None if row is None else value_of(row[0])

        return await self._call(op)

    async def scan(self, namespace: str, since_s: float = 0.0) -> list[tuple[str, Mapping[str, Any]]]:
        """:class:`~spanvisor.statestores.api.ScannableStateStore`: the keys
        of ``namespace`` with a value, written at or after ``since_s``."""

        def op(conn: sqlite3.Connection) -> list[tuple[str, Mapping[str, Any]]]:
            rows = conn.execute(
                "SELECT key, value FROM state WHERE namespace = ? AND value IS NOT NULL AND updated_at >= ?",
                (namespace, since_s),
            ).fetchall()
            return [(str(key), value) for key, raw in rows if (value := value_of(raw)) is not None]

        return await self._call(op)

    async def release(self, namespace: str, key: str, owner: str) -> None:
        await self._call(
            lambda conn: conn.execute(
                "DELETE FROM state WHERE namespace = ? AND key = ? AND owner = ? AND value IS NULL",
                (namespace, key, owner),
            )
        )

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._ops.put(None)
            await asyncio.to_thread(thread.join, 5.0)
