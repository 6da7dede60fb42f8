"""The decision log's chain head, sent to the receiver (opt-in).

With ``SPANVISOR_WEBHOOK_CHECKPOINTS`` on, the webhook sink reads the head
the audit plugin publishes to the shared state store
(:mod:`spanvisor.statestores.chainhead`) every :data:`POLL_S`, and when it
moved past the last head sent, queues one signed body in the sink's outbox,
behind the interventions already waiting (same signing, retries, order):

``{"type":"spanvisor.chain_checkpoint","v":1,"seq":N,"hash":H,"time":T,"checkpoint_id":"chain-N"}``

Off by default: receivers were promised ``type`` is always
``spanvisor.intervention``, so none gets another type unasked.

Who sends a head is settled in the store too: the last head sent (key
:data:`SENT_KEY`) is written with ``put_if_newer`` at the head's number
before it is queued, so of replicas sharing the store one wins each head
and the others skip it. The winner marks it ``queued`` once it is in its
outbox; a winner that died in between finds its unmarked record at its next
start (the owner is the replica id, stable across a receiver's restarts)
and queues it then. Should one head still be queued twice (a replica id
shared by two processes), both copies carry the same ``checkpoint_id``,
also in ``X-Spanvisor-Intervention-Id``: receivers dedupe on it as on an
intervention's id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from spanvisor.statestores.api import ConditionalStateStore, StateStore, put_own
from spanvisor.statestores.chainhead import NAMESPACE, ChainHead, head_from, read_head
from spanvisor.stream.body import SCHEMA_VERSION, rfc3339

TYPE = "spanvisor.chain_checkpoint"
# The last head a webhook sink queued, and by whom.
SENT_KEY = "webhook.sent"
# How often the head is read: one small read, and heads move every
# SPANVISOR_AUDIT_CHECKPOINT_INTERVAL (10 minutes by default).
POLL_S = 15.0
log = logging.getLogger("spanvisor.webhook")

# Puts outbox items in the sink's outbox; False when it could not.
Queue = Callable[[list[dict[str, Any]]], Awaitable[bool]]


def checkpoint_id(seq: int) -> str:
    return f"chain-{seq}"


def body(head: ChainHead) -> dict[str, Any]:
    return {
        "type": TYPE,
        "v": SCHEMA_VERSION,
        "seq": head.seq,
        "hash": head.hash,
        "time": rfc3339(head.at_ns),
        "checkpoint_id": checkpoint_id(head.seq),
    }


def item(head: ChainHead) -> dict[str, Any]:
    """The outbox entry: the sender posts ``body`` with ``id`` as its header id."""
    return {"id": checkpoint_id(head.seq), "queued_at": time.time(), "body": body(head)}


def _sent(value: Mapping[str, Any] | None) -> tuple[ChainHead | None, str, bool]:
    """The last head sent, its sender, and whether it reached the outbox."""
    head = head_from(value)
    if head is None or value is None:
        return None, "", False
    return head, str(value.get("by") or ""), bool(value.get("queued"))


class CheckpointWatch:
    """Reads the published head and queues each new one once (:meth:`tick`)."""

    def __init__(self, store: StateStore, owner: str, queue: Queue, poll_s: float = POLL_S) -> None:
        self.store = store
        self.owner = f"webhook:{owner}"
        self.queue = queue
        self.poll_s = poll_s
        self._failing = False
        self._stop = asyncio.Event()

    async def _mark(self, head: ChainHead, queued: bool) -> bool:
        value = {**head.to_dict(), "by": self.owner, "queued": queued}
        if isinstance(self.store, ConditionalStateStore):
            # own: the winner of a head marks it queued, at the same version.
            return (await put_own(self.store.put_if_newer, NAMESPACE, SENT_KEY, value, head.seq, self.owner)).won
        # A store without versions: not exact between replicas (the receiver's
        # dedupe on checkpoint_id covers a second copy).
        await self.store.put(NAMESPACE, SENT_KEY, value, self.owner)
        return True

    async def tick(self) -> ChainHead | None:
        """Queue the head if it is new; the head queued, or None."""
        head = await read_head(self.store)
        if head is None:
            return None
        sent, by, queued = _sent(await self.store.get(NAMESPACE, SENT_KEY))
        if sent is not None and sent.seq >= head.seq:
            if not (sent.seq == head.seq and by == self.owner and not queued):
                return None  # sent already, or being sent by another replica
            head = sent  # won before, not queued yet (a crash, a full outbox): queue it now
        elif not await self._mark(head, queued=False):
            return None  # another replica won this head
        if not await self.queue([item(head)]):
            return None  # still ours and unqueued: the next tick tries again
        await self._mark(head, queued=True)
        return head

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick()
                if self._failing:
                    self._failing = False
                    log.info("webhook sink: the decision log's head can be read again")
            except Exception as exc:  # the store away: try again next time
                if not self._failing:
                    self._failing = True
                    log.warning("webhook sink: cannot read the decision log's head (%s); retrying", type(exc).__name__)
            try:
                await asyncio.wait_for(self._stop.wait(), self.poll_s)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()


__all__ = ["POLL_S", "SENT_KEY", "TYPE", "CheckpointWatch", "body", "checkpoint_id", "item"]
