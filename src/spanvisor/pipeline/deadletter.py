"""The dead-letter store: events a sink kept failing on, set aside so the rest flow.

One SQLite file, ``<data dir>/deadletter/deadletter.sqlite3``, one table keyed
by sink and event id, shared by every pipeline and replica that uses the data
directory (WAL journal, a busy timeout). Each row keeps the event as
:mod:`spanvisor.codec` JSON, so ``spanvisor deadletter retry`` can deliver it
again exactly as it was.

The store is bounded per sink (:data:`MAX_PER_SINK`). An event that finds its
sink's share full is not stored; :meth:`DeadLetterStore.add` says so and the
caller counts it (``dropped_total{reason="dead_letter_full"}``).

SQLite calls block: the sink worker calls them through :func:`off_loop`, which
runs them on a worker thread, or inline once the interpreter refuses new
threads at exit (a dead letter is rare and small; losing it would be worse).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from spanvisor.codec import event_from_dict, event_to_dict
from spanvisor.events import Event
from spanvisor.stats import PipelineStats

# The sink worker's logger: a dead letter is the worker's news.
log = logging.getLogger("spanvisor.pipeline")

# Rows kept per sink; past it, new dead letters are dropped and counted.
MAX_PER_SINK = 10_000
FILE_NAME = "deadletter.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sink         TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    error        TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    set_aside_at REAL NOT NULL,
    body         TEXT NOT NULL,
    UNIQUE (sink, event_id)
)
"""

Added = Literal["added", "again", "full"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One set-aside event and why."""

    id: int
    sink: str
    event_id: str
    task_id: str
    kind: str
    error: str
    attempts: int
    set_aside_at: float  # unix seconds
    body: dict[str, Any]

    def event(self) -> Event:
        return event_from_dict(self.body)


def store_dir(data_dir: Path) -> Path:
    return data_dir / "deadletter"


class DeadLetterStore:
    """Opened lazily on first use; every method blocks (call via :func:`off_loop`)."""

    def __init__(self, directory: Path, max_per_sink: int = MAX_PER_SINK) -> None:
        self.path = directory / FILE_NAME
        self.max_per_sink = max_per_sink
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def add(self, sink: str, event: Event, error: str, attempts: int) -> Added:
        """Set ``event`` aside for ``sink``. ``again``: it was there already
        (the row keeps its place and takes the newest error)."""
        body = json.dumps(event_to_dict(event), separators=(",", ":"))
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT id FROM dead_letters WHERE sink = ? AND event_id = ?", (sink, event.event_id)
                ).fetchone()
                if row is not None:
                    db.execute(
                        "UPDATE dead_letters SET error = ?, attempts = attempts + ?, set_aside_at = ? WHERE id = ?",
                        (error, attempts, time.time(), row[0]),
                    )
                    outcome: Added = "again"
                elif db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink = ?", (sink,)).fetchone()[0] >= (
                    self.max_per_sink
                ):
                    outcome = "full"
                else:
                    db.execute(
                        "INSERT INTO dead_letters (sink, event_id, task_id, kind, error, attempts, set_aside_at, body)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (sink, event.event_id, event.task_id, event.kind, error, attempts, time.time(), body),
                    )
                    outcome = "added"
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return outcome

    def entries(self, sink: str | None = None, ids: Sequence[int] = ()) -> list[DeadLetter]:
        """Set-aside events in the order they were set aside, optionally filtered."""
        sql = "SELECT id, sink, event_id, task_id, kind, error, attempts, set_aside_at, body FROM dead_letters"
        where: list[str] = []
        args: list[Any] = []
        if sink is not None:
            where.append("sink = ?")
            args.append(sink)
        if ids:
            where.append(f"id IN ({', '.join('?' for _ in ids)})")
            args.extend(ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            if not self.path.exists() and self._conn is None:
                return []
            rows = self._db().execute(sql + " ORDER BY id", args).fetchall()
        return [
            DeadLetter(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), float(r[7]), json.loads(r[8])) for r in rows
        ]

    def remove(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        with self._lock:
            cur = self._db().execute(f"DELETE FROM dead_letters WHERE id IN ({', '.join('?' for _ in ids)})", list(ids))
            return int(cur.rowcount)

    def count(self, sink: str) -> int:
        with self._lock:
            if not self.path.exists() and self._conn is None:
                return 0
            return int(self._db().execute("SELECT COUNT(*) FROM dead_letters WHERE sink = ?", (sink,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a worker thread; inline when threads are refused (interpreter exit)."""
    try:
        return await asyncio.to_thread(fn, *args)
    except RuntimeError as exc:
        if "cannot schedule new futures" not in str(exc):
            raise
        return fn(*args)


async def set_aside(
    store: DeadLetterStore, sink: str, event: Event, error: str, attempts: int, stats: PipelineStats
) -> None:
    """Set ``event`` aside for ``sink``, which failed ``attempts`` times on it:
    stored, counted and logged once; or, when the store is full or cannot be
    written, dropped and counted with the reason."""
    added: str
    try:
        added = await off_loop(store.add, sink, event, error, attempts)
    except Exception as exc:
        added = f"could not be written to {store.path}: {exc}"
    if added not in ("added", "again"):
        reason = "dead_letter_full" if added == "full" else "dead_letter_error"
        why = f"{store.path} holds {store.max_per_sink} of them; see `spanvisor deadletter`"
        stats.drop(reason, sink=sink, detail=f"events sink {sink} failed on: {why if added == 'full' else added}")
        return
    stats.inc("sink_dead_letters_total", sink=sink)
    log.error(
        "sink %s failed %d times on event %s (%s of task %s): %s; it is set aside in the dead-letter "
        "store and the rest go on (see `spanvisor deadletter list --sink %s`)",
        sink,
        attempts,
        event.event_id,
        event.kind,
        event.task_id,
        error,
        sink,
    )


__all__ = ["MAX_PER_SINK", "DeadLetter", "DeadLetterStore", "off_loop", "set_aside", "store_dir"]
