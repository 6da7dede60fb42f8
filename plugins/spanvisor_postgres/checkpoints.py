"""Periodic checkpoints of the decision log's chain head.

The decision log is a hash chain (migration 0013, :mod:`.auditchain`), and
what a chain cannot show by itself is a rewrite of its newest links by
someone who can write the table and its triggers: only a head kept outside
the database shows that. So every ``SPANVISOR_AUDIT_CHECKPOINT_INTERVAL``
the sink reads the head (the newest link's number and hash, over the rows
and the removal records) and, when it moved since this process's last
checkpoint:

* records it in ``decision_chain_checkpoints`` (migration 0015; keyed by
  the number, so replicas sharing the database record each head once);
* logs one line, ``decision log head: link N, sha256 H``, on spanvisor's
  logger, by the replica whose row it was: a log shipped elsewhere keeps it;
* publishes it to the shared state store
  (:mod:`spanvisor.statestores.chainhead`, forward only), where the webhook
  sink, when asked, picks it up and sends it outside.

It also checks, on the way, that the chain still passes through the last
head this process checkpointed, and warns when it does not (``spanvisor
audit verify`` names what happened). It runs in its own task: the sink's
export never waits for it, and a failure is logged once and tried again at
the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from spanvisor.statestores.api import StateStore
from spanvisor.statestores.chainhead import ChainHead, advance

log = logging.getLogger("spanvisor.postgres")

# The newest link, as the link trigger finds it (migration 0013).
HEAD = """
SELECT s AS seq, h AS hash FROM (
    (SELECT chain_seq AS s, row_hash AS h FROM human_interventions
      WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1)
    UNION ALL
    (SELECT chain_seq, row_hash FROM human_interventions_removed ORDER BY chain_seq DESC LIMIT 1)
) head ORDER BY s DESC LIMIT 1
"""
LINK = """
SELECT row_hash FROM human_interventions WHERE chain_seq = $1
UNION ALL
SELECT row_hash FROM human_interventions_removed WHERE chain_seq = $1
LIMIT 1
"""
RECORD = """
INSERT INTO decision_chain_checkpoints (seq, row_hash, at, writer) VALUES ($1, $2, $3, $4)
ON CONFLICT (seq) DO NOTHING
"""


async def chain_head(conn: Any) -> tuple[int, str] | None:
    """The newest link's number and hash; None before the first decision."""
    row = await conn.fetchrow(HEAD)
    return None if row is None else (int(row["seq"]), str(row["hash"]))


class Checkpointer:
    """Checkpoints the head every ``interval_s`` (:meth:`run`), or once (:meth:`tick`)."""

    def __init__(
        self, pool_of: Callable[[], Awaitable[Any]], store: StateStore, writer: str, interval_s: float
    ) -> None:
        self._pool_of = pool_of
        self.store = store
        self.writer = writer
        self.owner = f"postgres:{writer}"
        self.interval_s = interval_s
        self.last: ChainHead | None = None  # the newest head this process checkpointed
        self._failing = False
        self._warned: set[tuple[int, str]] = set()
        self._stop = asyncio.Event()

    async def tick(self) -> ChainHead | None:
        """One checkpoint: the head recorded and published, or None when it
        has not moved since the last one (or nothing was decided yet)."""
        pool = await self._pool_of()
        async with pool.acquire() as conn:
            got, last = await chain_head(conn), self.last
            if got is None:
                return None
            if last is not None:
                if got == (last.seq, last.hash):
                    return None  # not moved
                if got[0] < last.seq or await conn.fetchval(LINK, last.seq) != last.hash:
                    # Links this process checkpointed were removed or rewritten.
                    self._warn(last, got)
                    if got[0] <= last.seq:
                        return None
            head = ChainHead(got[0], got[1], time.time_ns())
            at = datetime.fromtimestamp(head.at_ns / 1e9, UTC)
            status = await conn.execute(RECORD, head.seq, head.hash, at, self.writer)
        if str(status).endswith(" 1"):  # this replica recorded it: the one that logs it
            log.info("decision log head: link %d, sha256 %s", head.seq, head.hash)
        await advance(self.store, head, self.owner)
        self.last = head
        return head

    def _warn(self, last: ChainHead, got: tuple[int, str]) -> None:
        if got in self._warned:
            return
        self._warned.add(got)
        log.warning(
            "decision log: the chain no longer passes through link %d (sha256 %s) checkpointed at %s; "
            "its head is now link %d: run `spanvisor audit verify`",
            last.seq,
            last.hash,
            datetime.fromtimestamp(last.at_ns / 1e9, UTC).isoformat(timespec="seconds"),
            got[0],
        )

    async def safe_tick(self) -> ChainHead | None:
        """:meth:`tick`, never raising: a failure is logged once until one succeeds."""
        try:
            head = await self.tick()
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "decision log checkpoint failed (%s: %s); tried again every %.0f s",
                    type(exc).__name__,
                    exc,
                    self.interval_s,
                )
            return None
        if self._failing:
            self._failing = False
            log.info("decision log checkpoints work again")
        return head

    async def run(self) -> None:
        """Checkpoint every interval (the first one interval after start) until :meth:`stop`."""
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
                return
            except TimeoutError:
                pass
            await self.safe_tick()

    def stop(self) -> None:
        self._stop.set()


__all__ = ["Checkpointer", "chain_head"]
