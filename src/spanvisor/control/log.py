"""The control log: each task's human decisions, shared by every process.

Decisions are kept per task in the state store (namespace ``decisions``), as
one list appended to with ``put_if_newer`` at version = its length: two
processes appending at once both read length n, one writes n + 1 and the
other loses, reads again and retries. With the PostgreSQL state store every
replica and every agent process sees the same list, so a click received by
one replica reaches an agent polling another. Appends are idempotent on the
decision's ``intervention_id`` (a replayed click is recorded once), and the
first decision of its kind wins: one answer per approval, one cancel, one
retry, one acknowledgement per task.

A waiter re-reads the task's list when this process records a decision,
when the store says another process did (a ``WatchableStateStore``:
PostgreSQL's LISTEN/NOTIFY, so a click on one replica reaches an agent
long-polling another within milliseconds), and every :data:`POLL_S`
(:data:`WATCHED_POLL_S` while the store's notifications are on: they are
best effort).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spanvisor.events import Decision
from spanvisor.statestore import ConditionalStateStore, WatchableStateStore

NAMESPACE = "decisions"
DENIED_NAMESPACE = "decisions.denied"
# Most decisions one task keeps; beyond, new ones are refused (a runaway script).
MAX_PER_TASK = 200
# How often a waiter re-reads the store for decisions other processes recorded.
POLL_S = 0.2
# The same while the store notifies changes: a safety net for a lost notification.
WATCHED_POLL_S = 2.0
_ATTEMPTS = 20

RecordOutcome = Literal["applied", "duplicate", "already_decided", "full"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording a decision did. ``prior``: the decision that was there
    first (for "already approved by @x"), or this one again for a duplicate."""

    outcome: RecordOutcome
    prior: Decision | None = None

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


_FIELDS = frozenset(f.name for f in dataclasses.fields(Decision))


def decision_to_dict(d: Decision) -> dict[str, Any]:
    return dataclasses.asdict(d)


def decision_from_dict(x: Mapping[str, Any]) -> Decision | None:
    """A stored decision; None for anything malformed (never raises)."""
    try:
        d = Decision(**{k: v for k, v in x.items() if k in _FIELDS})
    except (TypeError, ValueError):
        return None
    ok = isinstance(d.intervention_id, str) and isinstance(d.task_id, str) and isinstance(d.time_ns, int)
    return d if ok and d.action in ("approve", "reject", "cancel", "retry", "acknowledge") else None


def first_of_kind(items: list[Decision], new: Decision) -> Decision | None:
    """The earlier decision that ``new`` would contradict or repeat, if any."""
    for d in items:
        if d.intervention_id == new.intervention_id:
            return d
        if new.action in ("approve", "reject"):
            if d.action in ("approve", "reject") and d.approval_id == new.approval_id:
                return d
        elif d.action == new.action:
            return d
    return None


class ControlLog:
    def __init__(
        self,
        store: ConditionalStateStore,
        owner: str = "",
        poll_s: float = POLL_S,
        watched_poll_s: float = WATCHED_POLL_S,
    ) -> None:
        self.store = store
        # Unique per log: the store lets an owner overwrite its own version, so
        # two processes must never share one.
        self.owner = f"{owner or 'control'}:{uuid.uuid4().hex[:12]}"
        self._lock = asyncio.Lock()  # one append at a time in this process (see owner)
        # Set (and replaced) on every change seen: a waiter holds the one it
        # read under, so a change between its read and its wait still wakes it.
        self._changed = asyncio.Event()
        self._poll_s = poll_s
        self._watched_poll_s = watched_poll_s

    def _wake(self, _key: str = "") -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _watching(self) -> bool:
        store = self.store
        if not isinstance(store, WatchableStateStore):
            return False
        try:
            return await store.watch(NAMESPACE, self._wake)
        except Exception:  # best effort: polling still finds every decision
            return False

    async def _notify(self, task_id: str) -> None:
        store = self.store
        if isinstance(store, WatchableStateStore):
            try:
                await store.notify(NAMESPACE, task_id)
            except Exception:  # best effort, as above
                return

    async def read(self, task_id: str) -> list[Decision]:
        raw = await self.store.get(NAMESPACE, task_id)
        items = raw.get("items") if isinstance(raw, Mapping) else None
        if not isinstance(items, list):
            return []
        return [d for d in (decision_from_dict(x) for x in items if isinstance(x, Mapping)) if d is not None]

    async def record(self, decision: Decision) -> Recorded:
        async with self._lock:
            for _ in range(_ATTEMPTS):
                items = await self.read(decision.task_id)
                prior = first_of_kind(items, decision)
                if prior is not None:
                    same = prior.intervention_id == decision.intervention_id
                    return Recorded("duplicate" if same else "already_decided", prior)
                if len(items) >= MAX_PER_TASK:
                    return Recorded("full")
                value = {"items": [decision_to_dict(d) for d in (*items, decision)]}
                claim = await self.store.put_if_newer(NAMESPACE, decision.task_id, value, len(items) + 1, self.owner)
                if claim.won:
                    self._wake()
                    await self._notify(decision.task_id)
                    return Recorded("applied")
                await asyncio.sleep(0.01)  # another process appended: read again
        raise RuntimeError(f"could not record a decision on task {decision.task_id} (contention)")

    async def first_denial(self, intervention_id: str, reason: str) -> bool:
        """True the first time this refused click is seen (anywhere): a
        refused click is not in the task's list, so its replays are told
        apart here, and audited once."""
        claim = await self.store.claim(DENIED_NAMESPACE, intervention_id, self.owner, lease_s=60.0)
        if not claim.won:
            return False
        await self.store.put(DENIED_NAMESPACE, intervention_id, {"reason": reason}, self.owner)
        return True

    async def denied_before(self, intervention_id: str) -> str | None:
        """The reason this click was refused the first time, if it was: a
        replay keeps the first answer even if it would now be allowed."""
        raw = await self.store.get(DENIED_NAMESPACE, intervention_id)
        reason = raw.get("reason") if isinstance(raw, Mapping) else None
        return reason if isinstance(reason, str) else None

    async def wait(self, task_id: str, after: int, timeout_s: float) -> list[Decision]:
        """The task's decisions past the first ``after``, waiting up to
        ``timeout_s`` for one when there are none yet."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        poll_s = self._poll_s
        if timeout_s > 0 and await self._watching():
            poll_s = self._watched_poll_s
        while True:
            changed = self._changed
            items = await self.read(task_id)
            if len(items) > after:
                return items[after:]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            # Woken at once by a change recorded here or notified by another
            # process (any task's: then the list is read again); else polled.
            try:
                await asyncio.wait_for(changed.wait(), min(poll_s, left))
            except TimeoutError:
                pass


__all__ = [
    "MAX_PER_TASK",
    "NAMESPACE",
    "POLL_S",
    "WATCHED_POLL_S",
    "ControlLog",
    "RecordOutcome",
    "Recorded",
    "first_of_kind",
]
