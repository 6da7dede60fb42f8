"""Batched, idempotent writes of events into the audit tables.

One transaction per batch: task states upserted forward-only, timeline rows
inserted ``ON CONFLICT (event_id) DO NOTHING`` (interventions on their
intervention id, log tails on ``(task_id, pos)``), and the event stream's
rows waiting for it (:mod:`spanvisor_postgres.streamrows`). Three ways, measured by
``benchmarks/bench_postgres.py``:

* ``copy`` (the default): COPY into session temp tables, then every
  table's ``INSERT … SELECT … ON CONFLICT``, the recount of finished
  tasks' totals (:mod:`spanvisor_postgres.finaltotals`), the stream's rows
  and the COMMIT in one query: BEGIN, a round trip per table with rows, and one.
* ``unnest``: the whole batch in one statement (one array per column into
  ``INSERT … SELECT * FROM unnest(…)``, the three inserts data-modifying
  CTEs of one ``WITH``): one round trip instead of about seven, but a third
  more Python CPU per event (asyncpg checks every array element against
  ``collections.abc`` types), and the pipeline's thread is what is short.
* ``executemany``: prepared statements, row by row (also the fallback that
  finds the culprits of a data error).

The writer keeps one pooled connection between batches (releasing it costs
a reset round trip each time) and creates its temp tables once on it.

Errors are sorted in two: :class:`TransientDbError` (the database is away,
busy or lost the connection; the caller keeps the batch in the outbox) and
data errors, after which the batch is retried event by event and the events
PostgreSQL still refuses are quarantined with the reason, so one bad row
never blocks the rest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import asyncpg

from spanvisor.codec import event_to_dict
from spanvisor.events import Event, HumanIntervention

from .batch import BatchRows, batch_rows
from .finaltotals import RECOUNT, RECOUNT_STAGED
from .renames import Renames, renames_in, take
from .sanitize import quarantine
from .streamrows import (
    STAGE,
    STAGE_COLUMNS,
    STAGED_INSERT,
    Offer,
    StreamRows,
    settle,
    staged_records,
    write_taken,
    writing,
)
from .tables import FROM_STAGE, STAGE_TABLES, STAGES, STATEMENTS, TABLES, alias

log = logging.getLogger("spanvisor.postgres")

WriteMethod = Literal["unnest", "copy", "executemany"]
# What runs in a batch's transaction after its rows and before its commit
# when the batch holds people's decisions: the sink's signing (signer.py), so
# a decision row is never committed without serve's signature.
Sign = Callable[[Any, Sequence[Event]], Awaitable[None]]


def _signing(sign: Sign | None, events: Sequence[Event]) -> Sign | None:
    if sign is None or not any(isinstance(e, HumanIntervention) for e in events):
        return None
    return sign


class TransientDbError(Exception):
    """The database cannot take the batch now; keep it and try again later."""


class DataRowError(Exception):
    """PostgreSQL refuses the data itself; retrying the same rows cannot help."""


# Data errors are SQLSTATE classes 22 (data exception) and 23 (constraint
# violation). Everything else is "not now": connection (08), resources (53),
# shutdown (57), serialization failures and deadlocks (40), system (58), and
# also schema errors (42), which a deploy fixes without losing rows.
_ClientDataError = asyncpg.exceptions._base.DataError


def classify(exc: BaseException) -> type[Exception]:
    """Which of :class:`TransientDbError` / :class:`DataRowError` ``exc`` is."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        if state[:2] in ("22", "23"):
            return DataRowError
        # Anything else, including schema errors (42: a migration missing), is
        # kept in the outbox: a fix to the deployment must not cost rows.
        return TransientDbError
    # asyncpg's client-side DataError (an InterfaceError and a ValueError): a
    # value it cannot encode, such as an int beyond int64.
    if isinstance(exc, _ClientDataError):
        return DataRowError
    if isinstance(exc, asyncpg.InterfaceError):  # e.g. "connection is closed"
        return TransientDbError
    if isinstance(exc, ValueError | OverflowError | TypeError):
        return DataRowError
    return TransientDbError


async def _copy_batch(
    conn: Any,
    events: Sequence[Event],
    writer: str,
    renames: Renames | None,
    staged: bool,
    carry: StreamRows | None,
    sign: Sign | None = None,
) -> None:
    """One transaction in as few round trips as COPY allows: BEGIN, one COPY
    per table with rows (asyncpg sends a COPY's rows without waiting for the
    server's go-ahead: one round trip each), the stream's taken rows staged
    the same way, then one simple query (several statements, no arguments)
    with every ``INSERT … SELECT`` in ``TABLES`` order, the stream's lock,
    insert and notification, and the COMMIT. A table without rows in the
    batch costs nothing. A batch that renames or holds provisional tasks
    moves their rows first (:mod:`.renames`): a round trip more. A batch
    with decisions to sign is signed before its COMMIT, five round trips
    more (the sink's savepoint, the rows' ids, their signatures, the
    savepoint's release, and the COMMIT on its own), and leaves the
    stream's rows to the feed (its lock is not held over the signing)."""
    taken: list[Offer] = []
    if sign is not None:
        carry = None
    try:
        await conn.execute("BEGIN" if staged else f"BEGIN; {STAGE_TABLES}")
        rows = await _rows(conn, events, writer, renames)
        statements: list[str] = []
        for (table, columns, _), records in zip(TABLES, rows.tables(), strict=True):
            if records:
                await conn.copy_records_to_table(f"_stage_{table}", records=records, columns=columns)
                statements.append(FROM_STAGE[table])
        if rows.recount and rows.tasks:
            statements.append(RECOUNT_STAGED)
        # Last, so the stream's advisory lock is held only until the commit.
        # Taken before any await, so a failure below hands them back.
        taken = carry.take() if carry is not None else []
        if taken:
            await conn.copy_records_to_table(STAGE, records=staged_records(taken), columns=STAGE_COLUMNS)
            statements.append(STAGED_INSERT)
        if sign is None:
            statements.append("COMMIT;")
        await conn.execute(" ".join(statements))
        if sign is not None:
            await sign(conn, events)
            await conn.execute("COMMIT")
    except BaseException:
        settle(taken, committed=False)  # handed back: the feed writes them itself
        if not conn.is_closed() and conn.is_in_transaction():
            # An error anywhere in the last query skips the rest of it, COMMIT too.
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    settle(taken, committed=True)


async def _rows(conn: Any, events: Sequence[Event], writer: str, renames: Renames | None) -> BatchRows:
    """The batch's rows, its renamed tasks' rows moved first (in its transaction)."""
    if renames is None:
        return batch_rows(events, writer)
    return batch_rows(events, writer, await take(conn, renames))


_COLUMN_TYPES = (
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
    " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped"
)


async def unnest_statement(conn: Any) -> str:
    """The one-statement batch write, typed from the live schema."""
    ctes: list[str] = []
    n = 0
    for table, columns, conflict in TABLES:
        types = {str(r[0]): str(r[1]) for r in await conn.fetch(_COLUMN_TYPES, table)}
        arrays = []
        for c in columns:
            n += 1
            arrays.append(f"${n}::{types[c]}[]")
        ctes.append(
            f"{table} AS (INSERT INTO {table}{alias(table)} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({', '.join(arrays)}) {conflict})"
        )
    return f"WITH {', '.join(ctes)} SELECT 1"


def _columns(records: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not records:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*records, strict=True)]


async def _write_rows(
    conn: Any,
    events: Sequence[Event],
    method: WriteMethod,
    one: str | None = None,
    staged: bool = False,
    carry: StreamRows | None = None,
    writer: str = "",
    sign: Sign | None = None,
) -> None:
    """``one``: the one-statement write (:func:`unnest_statement`), for
    ``unnest``; ``staged``: the temp tables exist on ``conn``; ``carry``: the
    event stream's batches waiting to be written in this transaction;
    ``writer``: who writes (``Writer.writer_id``); ``sign``: what signs the
    batch's decision rows in its transaction (:data:`Sign`)."""
    renames = renames_in(events)
    sign = _signing(sign, events)
    if method == "unnest" and one is not None:
        together = renames is not None or sign is not None
        async with conn.transaction() if together else contextlib.nullcontext():
            rows = await _rows(conn, events, writer, renames)
            args: list[list[Any]] = []
            for (_, columns, _), records in zip(TABLES, rows.tables(), strict=True):
                args.extend(_columns(records, len(columns)))
            await conn.execute(one, *args)
            if sign is not None:
                await sign(conn, events)
        # Its own transaction: the one statement cannot read the rows it
        # inserts. A recount, so a failure here is made good by the task's
        # next batch.
        if rows.recount and rows.tasks:
            await conn.execute(RECOUNT, [r[0] for r in rows.tasks])
        return
    if method == "copy":
        await _copy_batch(conn, events, writer, renames, staged, carry, sign)
        return
    taken: list[Offer] = []
    try:
        async with conn.transaction():
            rows = await _rows(conn, events, writer, renames)
            for (table, _, _), records in zip(TABLES, rows.tables(), strict=True):
                if records:
                    await conn.executemany(STATEMENTS[table], records)
            if rows.recount and rows.tasks:
                await conn.execute(RECOUNT, [r[0] for r in rows.tasks])
            if sign is not None:
                await sign(conn, events)
            # Last, so the stream's advisory lock is held only until the commit.
            # Taken before any await, so a failure below hands them back.
            taken = carry.take() if carry is not None else []
            await write_taken(conn, taken)
    except BaseException:
        settle(taken, committed=False)  # handed back: the feed writes them itself
        raise
    settle(taken, committed=True)


class Writer:
    """Writes batches through a pool; raises only :class:`TransientDbError`."""

    def __init__(self, pool: Any, method: WriteMethod = "copy", writer_id: str = "") -> None:
        self._pool = pool
        self.method: WriteMethod = method
        # This replica or process (SinkContext.replica_id): a task more than
        # one writer wrote has its final totals recounted (finaltotals.py).
        self.writer_id = writer_id
        self.quarantined = 0
        self._conn: Any = None  # kept between batches
        self._statement: str | None = None
        # The event stream's feed offers its batches here when it runs beside
        # this writer (spanvisor_postgres.streamrows); None: it does not.
        self.stream_rows: StreamRows | None = None
        # Signs a batch's decision rows before it commits; None: unsigned.
        self.sign: Sign | None = None

    @property
    def pool(self) -> Any:
        return self._pool

    @pool.setter
    def pool(self, pool: Any) -> None:
        if pool is not self._pool:
            self._conn = None  # it belonged to the pool being replaced
        self._pool = pool

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            conn = await self._pool.acquire()
            try:
                if self.method == "copy":
                    await conn.execute(STAGE_TABLES)  # all of them, one round trip
                elif self.method == "unnest" and self._statement is None:
                    self._statement = await unnest_statement(conn)
            except BaseException:
                await self._pool.release(conn)
                raise
            self._conn = conn
        return self._conn

    async def warm(self) -> None:
        """Connect and prepare (the temp tables, and one empty COPY into each;
        for ``unnest`` the statement, run once with no rows): asyncpg learns
        the column types on first use, round trips that under a busy serve
        made the first batch take most of a second."""
        try:
            conn = await self._connection()
            if self.method == "copy":
                # asyncpg reads each table's column types on its first COPY.
                for table, (columns, _) in STAGES.items():
                    await conn.copy_records_to_table(f"_stage_{table}", records=[], columns=columns)
                await conn.copy_records_to_table(STAGE, records=[], columns=STAGE_COLUMNS)
            elif self._statement is not None:
                empty: list[list[Any]] = [[] for _, columns, _ in TABLES for _ in columns]
                await conn.execute(self._statement, *empty)
        except Exception as exc:  # the first batch will try again
            await self._drop()
            log.debug("warming the writer failed: %s", exc)

    async def close(self) -> None:
        """Give the kept connection back (before the pool closes)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn)
            except Exception as exc:  # closing anyway; the pool terminates it
                log.debug("releasing the writer's connection failed: %s", exc)

    async def _drop(self) -> None:
        # After an error the connection's state is unknown: give it back
        # (the pool resets or replaces it) and take a fresh one next time.
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=5)
            except Exception:
                conn.terminate()

    async def write(self, events: Sequence[Event]) -> None:
        if not events:
            return
        # The one-statement write commits on its own and carries no stream rows.
        async with writing(self.stream_rows if self.method != "unnest" else None):
            await self._write(events)

    async def _write(self, events: Sequence[Event]) -> None:
        try:
            conn = await self._connection()
            try:
                await _write_rows(
                    conn,
                    events,
                    self.method,
                    self._statement,
                    staged=True,
                    carry=self.stream_rows,
                    writer=self.writer_id,
                    sign=self.sign,
                )
                return
            except Exception as exc:
                if classify(exc) is TransientDbError:
                    raise
                first_error = exc
            # A data error somewhere in the batch: find the culprits one by one.
            log.warning(
                "a batch of %d events hit a data error (%s); retrying event by event",
                len(events),
                _reason(first_error),
            )
            for event in events:
                try:
                    await _write_rows(conn, [event], "executemany", writer=self.writer_id, sign=self.sign)
                except Exception as exc:
                    if classify(exc) is TransientDbError:
                        raise
                    await self._quarantine(conn, event, exc)
        except TransientDbError:
            await self._drop()
            raise
        except Exception as exc:
            await self._drop()
            if classify(exc) is DataRowError:  # e.g. the quarantine insert itself
                log.error("could not quarantine: %s", _reason(exc))
            raise TransientDbError(_reason(exc)) from exc

    async def _quarantine(self, conn: Any, event: Event, exc: BaseException) -> None:
        reason = _reason(exc)
        log.error("quarantined event %s of task %s: %s", event.event_id, event.task_id, reason)
        await quarantine(conn, event.event_id, event.task_id, reason, event_to_dict(event))
        self.quarantined += 1


def _reason(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} (SQLSTATE {state})" if state else text
