"""The span journal: what the receiver has acknowledged, kept on local disk.

A 2xx from ``spanvisor serve`` means the accepted spans are committed here
*and* handed to the pipeline. If the process dies before the sinks have
them, the next start replays the journal entries younger than the retention
window; events keep their stable ids, so the tracker and the sinks drop what
they had already seen. Only what the tracker needs is stored: keyed spans in
full (as OTLP ``TracesData``) and 33 bytes of ancestry for every other span.

One SQLite file in WAL mode, written by one thread that commits every
pending append in one transaction (group commit), so a burst of requests
costs one commit rather than one each. ``synchronous=NORMAL`` survives a
killed process; ``full`` also survives a power cut, at an fsync per commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import cast

log = logging.getLogger("spanvisor.receiver")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS span_journal (
    id INTEGER PRIMARY KEY,
    recv_ns INTEGER NOT NULL,
    keyed BLOB NOT NULL,
    links BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS span_journal_recv ON span_journal (recv_ns);
"""
_MAX_GROUP = 256


class JournalFull(Exception):
    pass


class SpanJournal:
    def __init__(self, path: str | Path, max_bytes: int, sync: str = "normal") -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._sync = "FULL" if sync == "full" else "NORMAL"
        self._ops: queue.SimpleQueue[tuple[str, object, Future[int] | None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._bytes = 0
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        return conn

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT coalesce(sum(length(keyed) + length(links)), 0) FROM span_journal").fetchone()
        conn.close()
        self._bytes = int(row[0])
        self._thread = threading.Thread(target=self._writer, name="spanvisor-journal", daemon=True)
        self._thread.start()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return self._bytes >= self.max_bytes

    async def append(self, keyed: bytes, links: bytes) -> int:
        """Commit one request's spans; returns the entry id once durable."""
        if self.full:
            raise JournalFull(f"span journal holds {self._bytes} bytes (limit {self.max_bytes})")
        fut: Future[int] = Future()
        self._ops.put(("append", (time.time_ns(), keyed, links), fut))
        return await asyncio.wrap_future(fut)

    def discard(self, entry_id: int) -> None:
        """Forget an entry whose request was answered with a retryable error."""
        self._ops.put(("discard", entry_id, None))

    async def trim(self, older_than_ns: int) -> int:
        fut: Future[int] = Future()
        self._ops.put(("trim", older_than_ns, fut))
        return await asyncio.wrap_future(fut)

    def entries(self, since_ns: int) -> Iterator[tuple[int, int, bytes, bytes]]:
        """(id, recv_ns, keyed, links) younger than ``since_ns``, oldest first."""
        conn = self._connect()
        try:
            last = 0
            while True:
                rows = conn.execute(
                    "SELECT id, recv_ns, keyed, links FROM span_journal"
                    " WHERE id > ? AND recv_ns >= ? ORDER BY id LIMIT 64",
                    (last, since_ns),
                ).fetchall()
                if not rows:
                    return
                for row in rows:
                    yield int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3])
                last = int(rows[-1][0])
        finally:
            conn.close()

    def close(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._ops.put(None)
            self._thread.join(timeout_s)
            self._thread = None

    # --- the writer thread ------------------------------------------------

    def _writer(self) -> None:
        conn = self._connect()
        try:
            while True:
                op = self._ops.get()
                if op is None:
                    return
                group = [op]
                while len(group) < _MAX_GROUP:
                    try:
                        nxt = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._ops.put(None)  # finish this group, then stop
                        break
                    group.append(nxt)
                self._run(conn, group)
        finally:
            conn.close()

    def _run(self, conn: sqlite3.Connection, group: list[tuple[str, object, Future[int] | None]]) -> None:
        results: list[tuple[Future[int] | None, int]] = []
        delta = 0  # applied to the size only once the transaction commits
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, arg, fut in group:
                if kind == "append":
                    recv_ns, keyed, links = cast(tuple[int, bytes, bytes], arg)
                    cur = conn.execute(
                        "INSERT INTO span_journal (recv_ns, keyed, links) VALUES (?, ?, ?)",
                        (recv_ns, keyed, links),
                    )
                    results.append((fut, int(cur.lastrowid or 0)))
                    delta += len(keyed) + len(links)
                elif kind == "discard":
                    delta -= self._delete(conn, "id = ?", arg)[1]
                else:
                    count, size = self._delete(conn, "recv_ns < ?", arg)
                    results.append((fut, count))
                    delta -= size
            conn.execute("COMMIT")
            self._add(delta)
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.error("span journal write failed: %s", exc)
            for _, _, fut in group:
                if fut is not None and fut.set_running_or_notify_cancel():
                    fut.set_exception(exc)
            return
        for fut, value in results:
            # A cancelled waiter (client gone) just doesn't hear the result.
            if fut is not None and fut.set_running_or_notify_cancel():
                fut.set_result(value)

    def _add(self, n: int) -> None:
        with self._lock:
            self._bytes = max(0, self._bytes + n)

    def _delete(self, conn: sqlite3.Connection, where: str, arg: object) -> tuple[int, int]:
        row = conn.execute(
            f"SELECT count(*), coalesce(sum(length(keyed) + length(links)), 0) FROM span_journal WHERE {where}",
            (arg,),
        ).fetchone()
        conn.execute(f"DELETE FROM span_journal WHERE {where}", (arg,))
        return int(row[0]), int(row[1])
