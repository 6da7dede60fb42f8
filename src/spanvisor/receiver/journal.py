"""The span journal: what the receiver has acknowledged, kept on local disk.

A 2xx from ``spanvisor serve`` means the accepted spans are committed here
*and* handed to the pipeline. If the process dies before the sinks have
them, the next start replays the journal entries younger than the retention
window; events keep their stable ids, so the tracker and the sinks drop what
they had already seen.

**What an entry holds.** The request body as received, protobuf
(``ExportTraceServiceRequest``; a JSON request is stored as the protobuf it
was parsed into): a gzip body as it came, any other compressed here with
zlib (level 1, in the writer thread, which the GIL does not hold while it
compresses; about 9x smaller on agent traces). Storing the body costs the
request path nothing: no span is copied or re-encoded. Such an entry starts
with :data:`BODY` and a codec byte, in the ``keyed`` column (``links``
empty). Entries written before (``keyed``: a ``TracesData`` of the keyed
spans; ``links``: 33 bytes of ancestry per other span) still replay:
protobuf never starts with a zero byte, so the two cannot be confused.

One SQLite file in WAL mode, written by one thread that commits every
pending append in one transaction (group commit), so a burst of requests
costs one commit rather than one each. ``synchronous=NORMAL`` survives a
killed process; ``full`` also survives a power cut, at an fsync per commit.

**Delivered-through mark.** A graceful stop after which every sink had
everything (see :mod:`.delivery`) stores the highest entry id in
``journal_meta``. The next start replays only the entries above it to the
sinks; the ones below only rebuild the tracker's open tasks, with no event
sent anywhere. Entry ids come from ``AUTOINCREMENT``, so an id is never
reused after the journal empties and the mark can never hide a new entry.
An entry appended for a request that was then cancelled (the client went
away, a drain ran out of time) is deleted: the client heard no 2xx and sends
it again, so it must not count as delivered.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
import zlib
from concurrent.futures import Future
from pathlib import Path
from typing import cast

log = logging.getLogger("spanvisor.receiver")

_TABLE = """
CREATE TABLE IF NOT EXISTS span_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recv_ns INTEGER NOT NULL,
    keyed BLOB NOT NULL,
    links BLOB NOT NULL
);
"""
_SCHEMA = (
    _TABLE
    + """
CREATE INDEX IF NOT EXISTS span_journal_recv ON span_journal (recv_ns);
CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
)
# Journals written before the mark existed had ids that SQLite may reuse.
_MIGRATE = (
    "ALTER TABLE span_journal RENAME TO span_journal_v1;"
    + _TABLE
    + "INSERT INTO span_journal (id, recv_ns, keyed, links) SELECT id, recv_ns, keyed, links FROM span_journal_v1;"
    " DROP TABLE span_journal_v1;"
)
_DELIVERED = "delivered_through"
_HEARD = "heard_through_ns"  # the wall clock of the last trim: the process was listening then
_MAX_GROUP = 256
Row = tuple[int, int, bytes, bytes]

# An entry holding a request body starts with BODY and one of these codecs.
BODY = b"\x00"
# ``links`` of an entry holding live-channel records (an ExportLogsServiceRequest
# of those alone) rather than spans: never a multiple of 33 bytes, so never
# read as the links of the old format.
LIVE = b"live"
GZIP = b"g"  # the body as received, gzip
ZLIB = b"z"  # compressed here
GZIP_MAGIC = b"\x1f\x8b"


def body_of(keyed: bytes, limit: int | None = None) -> bytes | None:
    """The protobuf request body an entry holds; None for an entry in the
    format from before (keyed spans and links). ``limit``: the most bytes
    to inflate (what the receiver accepted, so a damaged entry cannot
    balloon)."""
    if keyed[:1] != BODY:
        return None
    codec, payload = keyed[1:2], keyed[2:]
    cap = limit or 0  # 0: no cap
    if codec == GZIP:
        out = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif codec == ZLIB:
        out = zlib.decompressobj()
    else:
        raise ValueError(f"span journal entry with unknown codec {codec!r}")
    body = out.decompress(payload, cap)
    if out.unconsumed_tail:
        raise ValueError("span journal entry inflates past the body limit")
    return body


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
        # Entries up to this id were delivered by every sink (read at open).
        self.delivered_through = 0
        # The last time the previous process is known to have been listening
        # (its newest entry or its last trim; wall clock, ns; 0: never).
        self.heard_through_ns = 0

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        return conn

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            old = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'span_journal'"
            ).fetchone()
            if old is not None and "AUTOINCREMENT" not in str(old[0]).upper():
                conn.executescript(f"BEGIN IMMEDIATE; {_MIGRATE} COMMIT;")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT coalesce(sum(length(keyed) + length(links)), 0) FROM span_journal").fetchone()
            mark = conn.execute("SELECT value FROM journal_meta WHERE key = ?", (_DELIVERED,)).fetchone()
            heard = conn.execute(
                "SELECT max(v) FROM (SELECT max(recv_ns) AS v FROM span_journal"
                " UNION ALL SELECT value FROM journal_meta WHERE key = ?)",
                (_HEARD,),
            ).fetchone()
        finally:
            conn.close()
        self._bytes = int(row[0])
        self.delivered_through = int(mark[0]) if mark else 0
        self.heard_through_ns = int(heard[0] or 0) if heard else 0
        self._thread = threading.Thread(target=self._writer, name="spanvisor-journal", daemon=True)
        self._thread.start()

    @property
    def is_open(self) -> bool:
        return self._thread is not None

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return self._bytes >= self.max_bytes

    async def append_body(self, body: bytes, recv_ns: int | None = None) -> int:
        """Commit one request body as received (protobuf, or gzip as it came);
        returns the entry id once durable. Compressed in the writer thread."""
        return await self.append(body, b"", recv_ns, compress=True)

    async def append_live(self, body: bytes, recv_ns: int | None = None) -> int:
        """Commit a request of live-channel records (``ExportLogsServiceRequest``
        protobuf); replayed in order with the spans, pruned with them."""
        return await self.append(body, LIVE, recv_ns, compress=True)

    async def append(self, keyed: bytes, links: bytes, recv_ns: int | None = None, *, compress: bool = False) -> int:
        """Commit one entry; returns its id once durable. ``compress``:
        ``keyed`` is a request body, stored as :func:`body_of` reads it."""
        if self.full:
            raise JournalFull(f"span journal holds {self._bytes} bytes (limit {self.max_bytes})")
        fut: Future[int] = Future()
        self._ops.put(("body" if compress else "append", (recv_ns or time.time_ns(), keyed, links), fut))
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            # The request is gone without a 2xx: its entry, once written, goes too.
            fut.add_done_callback(self._discard_written)
            raise

    def _discard_written(self, fut: Future[int]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.discard(fut.result())

    def discard(self, entry_id: int) -> None:
        """Forget an entry whose request was answered with a retryable error."""
        self._ops.put(("discard", entry_id, None))

    async def trim(self, older_than_ns: int) -> int:
        fut: Future[int] = Future()
        self._ops.put(("trim", older_than_ns, fut))
        return await asyncio.wrap_future(fut)

    async def mark_delivered(self) -> int:
        """Record that every entry written so far was delivered; returns the mark."""
        fut: Future[int] = Future()
        self._ops.put(("mark", None, fut))
        return await asyncio.wrap_future(fut)

    def read(self, after_id: int, since_ns: int, limit: int = 64) -> list[Row]:
        """Up to ``limit`` entries (id, recv_ns, keyed, links) with an id above
        ``after_id``, received since ``since_ns``, oldest first. Blocking: run
        it in a thread."""
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT id, recv_ns, keyed, links FROM span_journal WHERE id > ? AND recv_ns >= ? ORDER BY id LIMIT ?",
                (after_id, since_ns, limit),
            ).fetchall()
        finally:
            conn.close()
        return [(int(r[0]), int(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]

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
        results: list[tuple[str, Future[int], int]] = []
        delta = 0  # applied to the size only once the transaction commits
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, arg, fut in group:
                value = 0
                if kind in ("append", "body"):
                    recv_ns, keyed, links = cast(tuple[int, bytes, bytes], arg)
                    if kind == "body":
                        keyed = _stored(keyed)
                    cur = conn.execute(
                        "INSERT INTO span_journal (recv_ns, keyed, links) VALUES (?, ?, ?)",
                        (recv_ns, keyed, links),
                    )
                    value = int(cur.lastrowid or 0)
                    delta += len(keyed) + len(links)
                elif kind == "discard":
                    delta -= self._delete(conn, "id = ?", arg)[1]
                elif kind == "mark":
                    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'span_journal'").fetchone()
                    value = int(seq[0]) if seq else 0
                    conn.execute(
                        "INSERT INTO journal_meta (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (_DELIVERED, value),
                    )
                else:
                    value, size = self._delete(conn, "recv_ns < ?", arg)
                    delta -= size
                    conn.execute(
                        "INSERT INTO journal_meta (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (_HEARD, time.time_ns()),
                    )
                if fut is not None:
                    results.append((kind, fut, value))
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
        for kind, fut, value in results:
            if fut.set_running_or_notify_cancel():
                fut.set_result(value)
            elif kind in ("append", "body"):
                self.discard(value)  # its waiter was cancelled: the client heard no 2xx

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


def _stored(body: bytes) -> bytes:
    """A request body as an entry: gzip kept as it came, the rest compressed
    (zlib releases the GIL while it works, so the receiver's loop runs on)."""
    if body[:2] == GZIP_MAGIC:
        return BODY + GZIP + body
    return BODY + ZLIB + zlib.compress(body, 1)
