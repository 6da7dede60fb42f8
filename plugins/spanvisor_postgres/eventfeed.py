"""The event stream's feed in PostgreSQL: every replica serves every event.

``publish`` inserts this replica's items into ``stream_events`` (migration
0011) under a transaction-scoped advisory lock and notifies the
``spanvisor_events`` channel, in the PostgreSQL sink's transaction when
that sink runs in the same pipeline (:mod:`spanvisor_postgres.streamrows`)
and in one of its own otherwise: the lock makes sequence order commit order,
so a reader that has seen position N has seen all below it. Every replica
(this one too) listens on a connection of its own and, on a notification or
at the latest every second (a lost notification, a reconnect), reads the
rows after the last position it delivered, in order, into its ring; its own
rows come back without their bodies, which it still holds from publishing
them (by event id, until read back; a row it does not hold is read whole). Per-task
order holds because one replica's pipeline publishes a task's events in
order, each batch in one transaction.

``since`` serves clients the ring no longer covers, from the table, back to
``SPANVISOR_STREAM_RETENTION`` (older rows are pruned by whichever replica
gets there, and the prune mark makes positions before it a reset). Built
through the ``spanvisor.event_feeds`` entry point; shares the pipeline's
pool (:mod:`spanvisor_postgres.db`).

Rows are written only while somebody may read them: ``stream_meta.wanted_until``
(migration 0016) is set by a replica whose SSE client connects
(:meth:`PostgresEventFeed.want`, before the client's start is read) to a
retention ahead, and renewed while it has clients. Past it (no client
anywhere for a retention: every position one held is pruned), ``recording``
is False and the stream sink skips its events, neither encoded nor written;
the first skip after a write marks the gap as pruned (a fresh position of the
sequence, so every position recorded before it gets a reset, as a pruned one
does), and every replica's follower drops its ring to past the mark. Until
then a replica checks the mark before each batch it would skip, so a client
that connects to any replica gets every event published after its connection:
the mark is set only while nobody wants the stream (in the same statement),
and a replica a client connects to skips any mark set before, before it reads
the client's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from spanvisor.stream.feed import Deliver, Lost
from spanvisor.stream.ring import Item
from spanvisor.stream.settings import value

from .db import Database, close_listener, open_shared, release_shared, shared_pool
from .streamrows import CHANNEL, SHARED_KEY, StreamRows, write_rows

if TYPE_CHECKING:
    from spanvisor.config import Config

POLL_S = 1.0
PRUNE_EVERY_S = 60.0
PAGE = 1000
# How long a batch offered to the audit writer's transaction (only while it
# is writing) may wait before the feed writes it itself: a safety bound, as
# the writer hands back what it did not take when its write ends.
CARRY_WAIT_S = 0.5
# How long a batch the writer took may keep the feed waiting for its commit.
TAKEN_WAIT_S = 30.0
log = logging.getLogger("spanvisor.postgres")

_AFTER = """
SELECT pos, event_id, kind, task_id, agent_id, status, data, former_id FROM stream_events
WHERE pos > $1 ORDER BY pos LIMIT $2
"""
# Following the table: this replica's own rows come back without their body,
# which the feed still holds from publishing them (a NULL $3 matches none).
_FOLLOW = """
SELECT pos, event_id, kind, task_id, agent_id, status, CASE WHEN replica = $3 THEN NULL ELSE data END AS data,
    former_id
FROM stream_events WHERE pos > $1 ORDER BY pos LIMIT $2
"""
_ONE = "SELECT pos, event_id, kind, task_id, agent_id, status, data, former_id FROM stream_events WHERE pos = $1"
# Most items published and not yet read back that the feed keeps; one it no
# longer holds (or a row of an earlier run of this replica) is read whole.
OWN_MAX = 100_000
# While nobody reads the stream: its skipped events become a gap no position
# before it can resume across (positions below the mark are a reset).
# Only while nobody wants the stream, checked in the same statement: a
# replica's want() that commits first makes it mark nothing (the row's lock
# orders the two), so no gap is ever marked after a client connected.
_GAP = (
    "UPDATE stream_meta SET pruned_through = GREATEST(pruned_through,"
    " nextval(pg_get_serial_sequence('stream_events', 'pos')))"
    " WHERE coalesce(wanted_until, '-infinity') <= clock_timestamp() RETURNING pruned_through"
)
_LEFT = "extract(epoch FROM wanted_until - clock_timestamp())"
_WANT = (
    "UPDATE stream_meta SET wanted_until = GREATEST(coalesce(wanted_until, '-infinity'),"
    " clock_timestamp() + make_interval(secs => $1))"
    f" RETURNING {_LEFT} AS left_s, pruned_through"
)
_META = f"SELECT pruned_through, {_LEFT} AS left_s FROM stream_meta"
# How often a replica with clients renews the mark (and reads it, and the
# prune mark, when it has none).
RENEW_S = 60.0
_PRUNE = """
WITH gone AS (
    DELETE FROM stream_events WHERE recorded_at < clock_timestamp() - make_interval(secs => $1) RETURNING pos
)
UPDATE stream_meta SET pruned_through = GREATEST(pruned_through, (SELECT max(pos) FROM gone))
WHERE EXISTS (SELECT 1 FROM gone)
"""


def _item(row: Any) -> tuple[int, Item]:
    return int(row["pos"]), Item(
        event_id=row["event_id"],
        kind=row["kind"],
        task_id=row["task_id"],
        agent_id=row["agent_id"],
        status=row["status"],
        data=str(row["data"]).encode("ascii"),
        former_id=row["former_id"],
    )


class PostgresEventFeed:
    def __init__(self, db: Database, shared: dict[str, Any], config: Config) -> None:
        self._db = db
        self._shared = shared
        self._retention_s = float(value(config, "stream_retention_s"))
        self._replica = str(config.get("replica_id") or "")
        self.epoch = ""
        self._cursor = 0
        self._deliver: Deliver | None = None
        self._lost: Lost | None = None
        self._gap: Callable[[int], None] | None = None
        # Whether this process has stream clients (set by the stream sink).
        self.readers: Callable[[], bool] | None = None
        # Recording until (time.monotonic()), as the shared mark last said.
        self._wanted_until = 0.0
        self._want_at = -RENEW_S
        self._meta_at = 0.0
        # A gap is marked and nothing was written since (the next skip needs no mark).
        self._gap_open = False
        self._listener: Any = None
        self._notified = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._closed = False
        # Items this replica published, by event id, until read back in order.
        # OrderedDict: a plain dict's oldest key, found to evict it, is behind
        # the holes of every item read back since, O(n) an eviction.
        self._own: OrderedDict[str, Item] = OrderedDict()
        # Own rows gone before they could be read whole: told to ``lost`` (the
        # stream sink's drop counter), or logged once without one.
        self.skipped_rows = 0

    @classmethod
    async def open(cls, config: Config, shared: dict[str, Any]) -> PostgresEventFeed:
        return cls(await open_shared(config, shared), shared, config)

    async def start(self, deliver: Deliver, lost: Lost | None = None, gap: Callable[[int], None] | None = None) -> int:
        pool = await shared_pool(self._db, self._shared)
        await self._listen()  # before the head is read: nothing committed after it is missed
        row = await pool.fetchrow(
            # Past what was pruned even when pruning emptied the table: a
            # client resuming below that gets a reset, not a silent gap.
            "SELECT epoch, GREATEST((SELECT coalesce(max(pos), 0) FROM stream_events), pruned_through) AS head"
            " FROM stream_meta"
        )
        self.epoch, self._cursor = str(row["epoch"]), int(row["head"])
        self._deliver, self._lost, self._gap = deliver, lost, gap
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="spanvisor-event-feed")
        return self._cursor

    async def recording(self) -> bool:
        """Whether a client of any replica may read what is published now;
        False once the gap is marked (the sink then skips the batch)."""
        if time.monotonic() < self._wanted_until:
            return True
        pool = await shared_pool(self._db, self._shared)
        try:
            if self._wanted(await pool.fetchval(f"SELECT {_LEFT} FROM stream_meta")):
                return True
            if not self._gap_open:
                mark = await pool.fetchval(_GAP)
                if mark is None:  # a client connected meanwhile
                    return True
                self._skip_to(int(mark))
                self._gap_open = True
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.debug("event stream: cannot read whether it is read (%s); recording", exc)
            return True  # publish meets the same database and retries
        return False

    async def want(self) -> None:
        """A client connected here: every replica records from now on, until
        a retention after the last client (renewed while it stays)."""
        pool = await shared_pool(self._db, self._shared)
        self._want_at = time.monotonic()
        row = await pool.fetchrow(_WANT, self._retention_s)
        self._wanted(row["left_s"])
        # A gap another replica marked before this want is skipped here, now,
        # not at the follower's next look: the client's start is read next
        # and must not fall below it (it would get a reset, then miss what
        # was published meanwhile).
        self._skip_to(int(row["pruned_through"]))

    def _wanted(self, left_s: Any) -> bool:
        if left_s is None or float(left_s) <= 0:
            return False
        self._wanted_until = time.monotonic() + float(left_s)
        return True

    async def _meta(self) -> None:
        """The follower's look at the marks, at most every POLL_S: renews
        ``wanted`` while this process has clients, and skips another
        replica's gap."""
        now = time.monotonic()
        if now - self._meta_at < POLL_S:
            return
        self._meta_at = now
        if self.readers is not None and self.readers() and now - self._want_at >= RENEW_S:
            await self.want()
        pool = await shared_pool(self._db, self._shared)
        row = await pool.fetchrow(_META)
        self._wanted(row["left_s"])
        self._skip_to(int(row["pruned_through"]))

    def _skip_to(self, pruned: int) -> None:
        """Past a gap (or a prune) beyond the cursor: the ring starts after it
        (here at once for this replica's own mark, so a client that connects
        next starts after it too)."""
        if pruned > self._cursor:
            self._cursor = pruned
            self._own.clear()  # rows below it are not read back; later ones are read whole
            if self._gap is not None:
                self._gap(pruned)

    async def publish(self, items: Sequence[Item]) -> bool:
        pool = await shared_pool(self._db, self._shared)
        if self._replica:
            own = self._own
            for i in items:
                own[i.event_id] = i
            while len(own) > OWN_MAX:
                own.popitem(last=False)
        columns = (
            [i.event_id for i in items],
            [i.kind for i in items],
            [i.task_id for i in items],
            [i.agent_id for i in items],
            [i.status for i in items],
            [i.data.decode("ascii") for i in items],
            [i.former_id for i in items],
        )
        try:
            if not await self._carried(columns):
                async with pool.acquire() as conn, conn.transaction():
                    await write_rows(conn, columns, self._replica)
        except asyncpg.DataError:  # the batch's own values: the worker isolates the event
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # the database: the sink retries
            log.warning("event stream: cannot write %d events to PostgreSQL (%s); retrying", len(items), exc)
            return False
        self._gap_open = False
        self._notified.set()  # this replica reads its own rows back at once
        return True

    async def _carried(self, columns: Sequence[list[Any]]) -> bool:
        """True when the audit writer's transaction committed the batch."""
        carrier: StreamRows | None = self._shared.get(SHARED_KEY)
        if carrier is None or not carrier.busy:  # no PostgreSQL sink here, or it is idle
            return False
        offer = carrier.offer(columns, self._replica)
        try:
            return await asyncio.wait_for(asyncio.shield(offer.done), CARRY_WAIT_S)
        except TimeoutError:
            if carrier.withdraw(offer):
                return False
        try:  # taken meanwhile: its transaction decides
            return await asyncio.wait_for(asyncio.shield(offer.done), TAKEN_WAIT_S)
        except TimeoutError:
            # Written by us instead: the lock makes our insert wait for that
            # transaction's end, and ON CONFLICT keeps a row it committed single.
            return False

    async def since(self, after: int, limit: int) -> list[tuple[int, Item]] | None:
        pool = await shared_pool(self._db, self._shared)
        rows = await pool.fetch(_AFTER, after, limit)
        # Read after the rows: a prune by another replica between the two
        # reads would otherwise hide the rows it took without a reset.
        pruned = await pool.fetchval("SELECT pruned_through FROM stream_meta")
        if after < int(pruned or 0):
            return None
        return [_item(r) for r in rows]

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        conn = await asyncpg.connect(self._db.url, timeout=10.0)
        await conn.add_listener(CHANNEL, lambda *_: self._notified.set())
        self._listener = conn

    async def _follow(self) -> None:
        # Not `while True`: on Python 3.11 wait_for swallows a cancellation
        # that lands as the notification arrives, and close() would wait on
        # a follower that never ends.
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notified.wait(), POLL_S)
            self._notified.clear()
            try:
                await self._listen()
                await self._meta()
                await self._read()
                if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                    self._last_prune = time.monotonic()
                    pool = await shared_pool(self._db, self._shared)
                    await pool.execute(_PRUNE, self._retention_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: polled again, the cursor kept
                if self._listener is not None and self._listener.is_closed():
                    self._listener = None
                log.debug("event feed: %s; retrying", exc)
                await asyncio.sleep(POLL_S)

    async def _read(self) -> None:
        pool = await shared_pool(self._db, self._shared)
        while True:
            after = self._cursor
            rows = await pool.fetch(_FOLLOW, after, PAGE, self._replica or None)
            if not rows:
                return
            if self._cursor != after:  # want() skipped a gap during the read: read again past it
                continue
            records: list[tuple[int, Item]] = []
            own = self._own
            held: list[str] = []
            for r in rows:
                # By position (_FOLLOW's columns): a row of this replica's own
                # is read back for every event it publishes.
                if r[6] is not None:
                    records.append(_item(r))
                    continue
                event_id = r[1]
                item = own.get(event_id)
                if item is not None:
                    records.append((r[0], item))
                    held.append(event_id)
                    continue
                # Not held (an earlier run's, or evicted): read whole. Gone
                # meanwhile (another replica pruned it): skipped, counted.
                whole = await pool.fetchrow(_ONE, r["pos"])
                if whole is None or whole["data"] is None:
                    self._skipped(int(r["pos"]))
                else:
                    records.append(_item(whole))
            if self._deliver is not None and records:
                self._deliver(records)
            # Only once delivered: a delivery that failed (or a cancellation
            # before it) reads the same rows again, bodies still held.
            self._cursor = int(rows[-1]["pos"])
            pop = own.pop
            for event_id in held:
                pop(event_id, None)
            if len(rows) < PAGE:
                return

    def _skipped(self, pos: int) -> None:
        why = f"event stream row {pos} was gone when read whole (pruned by another replica?); its clients miss it"
        if self._lost is not None:
            self._lost(1, why)  # counted, the first one logged, by the stream sink
        elif not self.skipped_rows:
            log.warning("%s; skipped, and counted", why)
        self.skipped_rows += 1

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        listener, self._listener = self._listener, None
        await close_listener(listener)
        await release_shared(self._db, self._shared)


__all__ = ["CHANNEL", "PostgresEventFeed"]
