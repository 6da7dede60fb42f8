"""The event stream's rows, carried in the audit writer's transaction.

With the PostgreSQL sink and the stream's PostgreSQL feed in one pipeline,
each stream batch was a second writer's transaction beside the audit
writer's: its own connection (a reset round trip at every release), BEGIN,
the advisory lock, the insert, the notification, COMMIT and its fsync. Now
:meth:`PostgresEventFeed.publish <spanvisor_postgres.eventfeed.PostgresEventFeed.publish>`
offers its batch here while the audit writer is writing, and that
transaction takes it just before its commit:
the same advisory lock (taken just before the insert, so it is held only
until that transaction's commit), the same ``INSERT``, the same
notification at that commit. One commit a batch for both tables.

The guarantees stay the feed's: the lock still makes sequence order commit
order across replicas; the rows and their notification commit together;
a batch is taken whole, in the order offered, by exactly one transaction.
While the writer is idle the feed writes in a transaction of its own as
before, so a quiet stream's clients do not wait for the writer's batch
delay. What arrives after the writer took its offers, what a failed
transaction took, and what is not taken in time (a safety bound) are handed
back and written the same way; ``ON CONFLICT (event_id) DO NOTHING`` keeps
a retried row single.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

# The pipeline's shared dict: the PostgreSQL sink registers the carrier there.
SHARED_KEY = "postgres.stream_rows"

CHANNEL = "spanvisor_events"
# An arbitrary constant naming "the event stream's writers" among advisory locks.
LOCK_KEY = 0x5350_5354_5245_414D & 0x7FFF_FFFF_FFFF_FFFF
# Lock, then insert; the notification is queued in the same statement as the
# lock (PostgreSQL sends it at commit wherever the transaction queued it).
LOCK_AND_NOTIFY = "SELECT pg_advisory_xact_lock($1), pg_notify($2, '')"
# One statement a batch (arrays unnested in order), not one a row: a
# batch's rows keep their order in the sequence and the lock is held for one
# round trip.
INSERT = """
INSERT INTO stream_events (event_id, kind, task_id, agent_id, status, data, former_id, replica)
SELECT e, k, t, a, s, d, f, $8
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    WITH ORDINALITY AS u(e, k, t, a, s, d, f, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""


class Offer:
    """One stream batch: its columns and whether a transaction committed it."""

    __slots__ = ("columns", "done", "replica")

    def __init__(self, columns: Sequence[list[Any]], replica: str) -> None:
        self.columns = columns
        self.replica = replica
        # True: committed by the writer; False: handed back, the feed writes it.
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()


class StreamRows:
    """Stream batches waiting for the audit writer's next transaction.

    Used on the pipeline's loop only: offering, taking and withdrawing
    never interleave.
    """

    def __init__(self) -> None:
        self._offers: list[Offer] = []
        # True while the audit writer is inside a write: only then is a batch
        # offered (an idle writer would keep the stream's clients waiting).
        self.busy = False

    def offer(self, columns: Sequence[list[Any]], replica: str) -> Offer:
        offer = Offer(columns, replica)
        self._offers.append(offer)
        return offer

    def withdraw(self, offer: Offer) -> bool:
        """True when no transaction took ``offer`` (it is the caller's again)."""
        try:
            self._offers.remove(offer)
        except ValueError:
            return False
        return True

    def take(self) -> list[Offer]:
        taken, self._offers = self._offers, []
        return taken


async def write_rows(conn: Any, columns: Sequence[list[Any]], replica: str) -> None:
    """One batch's rows and their notification, inside ``conn``'s open transaction."""
    await conn.execute(LOCK_AND_NOTIFY, LOCK_KEY, CHANNEL)
    await conn.execute(INSERT, *columns, replica)


# The audit writer's COPY path stages the taken rows (in offered order, ``n``)
# and writes them in its last statement, with the lock and notification
# (:data:`STAGED_INSERT`): no round trip of their own.
STAGE = "_stage_stream_events"
STAGE_COLUMNS = ("n", "event_id", "kind", "task_id", "agent_id", "status", "data", "former_id", "replica")
CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (n bigint, event_id text, kind text, task_id text,"
    " agent_id text, status text, data text, former_id text, replica text) ON COMMIT DELETE ROWS;"
)
# Constants only: this runs in a multi-statement simple query.
STAGED_INSERT = (
    f"SELECT pg_advisory_xact_lock({LOCK_KEY}), pg_notify('{CHANNEL}', '');"
    " INSERT INTO stream_events (event_id, kind, task_id, agent_id, status, data, former_id, replica)"
    f" SELECT event_id, kind, task_id, agent_id, status, data, former_id, replica FROM {STAGE} ORDER BY n"
    " ON CONFLICT (event_id) DO NOTHING;"
)


def staged_records(taken: Sequence[Offer]) -> list[tuple[Any, ...]]:
    """The taken batches' rows for :data:`STAGE`, numbered in the order offered."""
    records: list[tuple[Any, ...]] = []
    for offer in taken:
        replica = offer.replica
        start = len(records)
        records.extend((start + i, *row, replica) for i, row in enumerate(zip(*offer.columns, strict=True)))
    return records


async def write_taken(conn: Any, taken: Sequence[Offer]) -> None:
    """The taken batches' rows, inside ``conn``'s open transaction, in the
    order offered; the caller settles them when the transaction ends."""
    by_replica: dict[str, list[list[Any]]] = {}
    for offer in taken:  # one feed per pipeline: one replica name in practice
        columns = by_replica.setdefault(offer.replica, [[] for _ in offer.columns])
        for column, values in zip(columns, offer.columns, strict=True):
            column.extend(values)
    for replica, columns in by_replica.items():
        await write_rows(conn, columns, replica)


@contextlib.asynccontextmanager
async def writing(carrier: StreamRows | None) -> AsyncIterator[None]:
    """The audit writer's write: offers are taken meanwhile; what was
    offered after the write took its batches is handed back at its end."""
    if carrier is None:
        yield
        return
    carrier.busy = True
    try:
        yield
    finally:
        carrier.busy = False
        settle(carrier.take(), committed=False)


def settle(taken: Sequence[Offer], committed: bool) -> None:
    for offer in taken:
        if not offer.done.done():
            offer.done.set_result(committed)


__all__ = [
    "CHANNEL",
    "CREATE_STAGE",
    "INSERT",
    "LOCK_KEY",
    "SHARED_KEY",
    "STAGE",
    "STAGED_INSERT",
    "STAGE_COLUMNS",
    "Offer",
    "StreamRows",
    "settle",
    "staged_records",
    "write_rows",
    "write_taken",
    "writing",
]
