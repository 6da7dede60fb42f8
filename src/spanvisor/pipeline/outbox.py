"""A durable local queue: where a sink's batches wait while their destination is down.

One SQLite file per sink name in the data directory (stdlib ``sqlite3``, WAL
journal, ``synchronous=FULL``), holding JSON dicts in append order. ``append``
returns only after the commit is on disk, so a sink may answer SUCCESS for a
batch it could not deliver and a crash or a power cut right after still loses
nothing: the next start finds the rows and replays them with ``peek``/``ack``.

The queue is bounded. Reaching the bound raises :class:`OutboxFull` for the
whole batch (never a partial append); the caller decides what that means and
must count it (``stats.drop("outbox_full", ...)``), so nothing is lost
silently.

Each destination has a file of its own (:mod:`.outbox_destination`): a
sink opens only its destination's, so events held for one database are never
replayed into another; the others are kept, and said once in the log.

SQLite calls block, so every public method runs them on a worker thread
(``asyncio.to_thread``) behind one lock: the event loop the sinks share never
waits on an fsync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanvisor.pipeline.outbox_destination import (
    DESTINATION_SCHEMA,
    HeldElsewhere,
    OutboxDestination,
    held_elsewhere,
    outbox_path,
)

if TYPE_CHECKING:
    from spanvisor.stats import PipelineStats

log = logging.getLogger("spanvisor.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused, so order survives acks
    body TEXT NOT NULL
)
"""


class OutboxFull(Exception):
    """The outbox holds its configured maximum; the batch was not stored."""


class Outbox:
    """A bounded FIFO of JSON dicts on disk. Create with :meth:`open`."""

    def __init__(self, path: Path, max_items: int, name: str, destination: OutboxDestination | None = None) -> None:
        self.path = path
        self.name = name
        self.max_items = max_items
        self.destination = destination
        # Other destinations' files holding events, found at open: kept, not sent here.
        self.held_elsewhere: list[HeldElsewhere] = []
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._size = 0

    @classmethod
    async def open(
        cls,
        directory: Path | str,
        name: str,
        max_items: int,
        stats: PipelineStats | None = None,
        destination: OutboxDestination | None = None,
    ) -> Outbox:
        """Open (or create) the outbox of sink ``name`` for ``destination``
        (``<directory>/outbox-<name>@<digest>.sqlite3``; without one,
        ``outbox-<name>.sqlite3``); rows left by a crash are kept. Other
        destinations' files are left alone and said once in the log."""
        path = outbox_path(Path(directory), name, destination)
        box = cls(path, max_items, name, destination)
        await asyncio.to_thread(box._open_sync)
        if destination is not None:
            box.held_elsewhere = await asyncio.to_thread(held_elsewhere, path.parent, name, path)
            box._say_held_elsewhere()
        if stats is not None:
            stats.gauge("outbox_events", lambda: float(box.size), sink=name)
        return box

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced before it returns, which is what "durable
        # before append returns" means; NORMAL would survive a process crash
        # but not a power cut.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        if self.destination is not None:
            conn.execute(DESTINATION_SCHEMA)
            if conn.execute("SELECT COUNT(*) FROM destination").fetchone()[0] == 0:
                conn.execute(
                    "INSERT INTO destination(digest, label) VALUES (?, ?)",
                    (self.destination.digest, self.destination.label),
                )
        self._size = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._conn = conn

    def _say_held_elsewhere(self) -> None:
        here = self.destination.label if self.destination is not None else "this destination"
        for held in self.held_elsewhere:
            whom = held.label or "a destination not recorded (an outbox written before spanvisor recorded it)"
            log.warning(
                "%s outbox: %d events held for %s are kept in %s and not sent to %s; configure that destination "
                "again to deliver them (deleting the file drops them)",
                self.name,
                held.events,
                whom,
                held.path,
                here,
            )

    @property
    def size(self) -> int:
        """Items waiting (read without I/O, for gauges and fast checks)."""
        return self._size

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"outbox {self.name!r} is closed")
        return self._conn

    async def append(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Store ``items`` durably and in order, all or none; :class:`OutboxFull` at the bound."""
        if not items:
            return
        # Serialise before taking the lock; ensure_ascii keeps lone surrogates
        # as \\udxxx escapes, so even text PostgreSQL would reject survives.
        bodies = [(json.dumps(item, separators=(",", ":")),) for item in items]
        await asyncio.to_thread(self._append_sync, bodies)

    def _append_sync(self, bodies: list[tuple[str]]) -> None:
        with self._lock:
            if self._size + len(bodies) > self.max_items:
                raise OutboxFull(
                    f"outbox {self.name!r} at {self.path} holds {self._size} of at most "
                    f"{self.max_items} items and cannot take {len(bodies)} more"
                )
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO outbox(body) VALUES (?)", bodies)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._size += len(bodies)

    async def peek(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The oldest ``limit`` items as ``(seq, item)``, without removing them."""
        return await asyncio.to_thread(self._peek_sync, limit)

    def _peek_sync(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db().execute("SELECT seq, body FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(int(seq), json.loads(body)) for seq, body in rows]

    async def ack(self, upto_seq: int) -> int:
        """Remove every item with ``seq <= upto_seq``; returns how many went."""
        return await asyncio.to_thread(self._ack_sync, upto_seq)

    def _ack_sync(self, upto_seq: int) -> int:
        with self._lock:
            db = self._db()
            cur = db.execute("DELETE FROM outbox WHERE seq <= ?", (upto_seq,))
            removed = cur.rowcount
            self._size = max(0, self._size - removed)
            return removed

    async def close(self) -> None:
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


__all__ = ["Outbox", "OutboxFull"]
