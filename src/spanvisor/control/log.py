"""The control log: each run's record (state, requests, decisions), shared
by every process through the state store.

A run's record (:mod:`.runs`) lives in namespace ``decisions`` under
:func:`~.runs.run_key`, changed only by compare-and-set (``put_if_newer`` at
the record's version + 1): two processes changing one run at once both read
version n, one writes n + 1 and the other loses, reads again and retries.
The store refuses an equal version whoever writes it, and inside one
process the changes of one key take turns (:mod:`.turns`). On the local
SQLite store (one writer thread) a change is read and written in one of its
transactions instead (``update_many``), so nothing retries there.
With the PostgreSQL state store every replica and every agent process sees
the same records, so each checks a decision against the same facts. Next to
the records: ``runs`` (task id -> its runs, oldest first: a decision naming
only a task id goes to its latest run) and ``requests`` (one key, ``open``:
the open requests of every run, for listing and for the expiry sweep).

A waiter re-reads a run's record when this process changes one, when the
store says another process did (a ``WatchableStateStore``: PostgreSQL's
LISTEN/NOTIFY), and every :data:`POLL_S` (:data:`WATCHED_POLL_S` while the
store's notifications are on: they are best effort).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from spanvisor.control import consume, floors, grants, moved, runs
from spanvisor.control.runs import decision_from_dict, decision_to_dict, run_key
from spanvisor.control.turns import Turns
from spanvisor.events import ApprovalRequest, Decision, TaskView
from spanvisor.gate.requirement import Floor
from spanvisor.statestores.api import BatchStateStore, Change, ConditionalStateStore, WatchableStateStore

NAMESPACE = "decisions"
RUNS_NAMESPACE = "runs"
REQUESTS_NAMESPACE = "requests"
OPEN_KEY = "open"
DENIED_NAMESPACE = "decisions.denied"
# Runs one task id keeps in its index (the newest).
MAX_RUNS = 20
# Open requests listed at once (the oldest go first beyond).
MAX_OPEN = 1000
# How often a waiter re-reads the store for decisions other processes recorded.
POLL_S = 0.2
# The same while the store notifies changes: a safety net for a lost notification.
WATCHED_POLL_S = 2.0
_ATTEMPTS = 60
T = TypeVar("T")
RunChange = Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]]


def _guard(change: RunChange[T]) -> RunChange[T | moved.Moved]:
    """``change`` of a run's record, unless the key holds the alias a renamed
    task left (moved.py): then nothing is written and the answer says where
    the record went."""

    def guarded(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, T | moved.Moved]:
        to = moved.target(rec)
        if to is not None and rec is not None:
            return None, moved.Moved(to, rec)
        return change(rec)

    return guarded


def listing(run_id: str, started_ns: int) -> Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, None]]:
    """The change that adds a run to its task's list of runs (none when listed)."""

    def change(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
        got = list(value.get("runs") or []) if value else []
        if any(isinstance(p, list) and p and p[0] == run_id for p in got):
            return None, None
        got.append([run_id, started_ns])
        got.sort(key=lambda p: (p[1] if isinstance(p[1], int) else 0, str(p[0])))
        return {"runs": got[-MAX_RUNS:]}, None

    return change


def _version(raw: Mapping[str, Any] | None) -> int:
    if not isinstance(raw, Mapping):
        return 0
    v = raw.get("v")
    return v if isinstance(v, int) else 0


class ControlLog:
    def __init__(
        self,
        store: ConditionalStateStore,
        owner: str = "",
        poll_s: float = POLL_S,
        watched_poll_s: float = WATCHED_POLL_S,
    ) -> None:
        self.store = store
        # Unique per log: who wrote a record, for a reader (the store's
        # compare-and-set no longer depends on it).
        self.owner = f"{owner or 'control'}:{uuid.uuid4().hex[:12]}"
        # One coroutine at a time changes a key here (turns.py).
        self._turns = Turns()
        # Compare-and-sets lost to another writer (another process), then retried.
        self.conflicts = 0
        # Set (and replaced) on every change seen: a waiter holds the one it
        # read under, so a change between its read and its wait still wakes it.
        self._changed = asyncio.Event()
        self._poll_s = poll_s
        self._watched_poll_s = watched_poll_s
        self.floor: Floor | None = None  # the central policy in force where people decide (control/floors.py)

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

    async def _notify(self, key: str) -> None:
        store = self.store
        if isinstance(store, WatchableStateStore):
            try:
                await store.notify(NAMESPACE, key)
            except Exception:  # best effort, as above
                return

    async def update(
        self, namespace: str, key: str, change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]]
    ) -> T:
        """Compare-and-set: ``change`` gets the stored value (a copy, or None)
        and returns (the new value or None for no write, a result). The
        value read at version n is written at n + 1 only if the key is still
        at n; otherwise it is read again and ``change`` runs again, so a
        result answers the write that happened, never a lost one."""
        if getattr(self.store, "single_writer", False) and self.batches:
            # One step on the store's own thread (the local SQLite store):
            # nothing comes between the read and the write, nothing retries.
            return (await self.update_many([(namespace, key, change)]))[0]
        async with self._turns.of(namespace, key):
            for attempt in range(_ATTEMPTS):
                raw = await self.store.get(namespace, key)
                value, result = change(dict(raw) if isinstance(raw, Mapping) else None)
                if value is None:
                    return result
                version = _version(raw) + 1
                value["v"] = version
                claim = await self.store.put_if_newer(namespace, key, value, version, self.owner)
                if claim.won:
                    if namespace == NAMESPACE:
                        self._wake()
                        await self._notify(key)
                    return result
                self.conflicts += 1
                # Another process wrote: read again, after a pause that grows
                # (with jitter, so two replicas do not collide in step).
                await asyncio.sleep(random.uniform(0.001, 0.002 * min(attempt + 1, 25)))
        raise RuntimeError(f"could not update {namespace}/{key} (contention)")

    # -- runs ----------------------------------------------------------------

    async def record(self, task_id: str, run_id: str) -> Mapping[str, Any] | None:
        """The run's record; under either id of a task its root renamed (moved.py)."""
        raw = await self.store.get(NAMESPACE, run_key(task_id, run_id))
        to = moved.target(raw)
        if to is None or raw is None:
            return raw if isinstance(raw, Mapping) else None
        got = await self.store.get(NAMESPACE, run_key(to, run_id))
        if isinstance(got, Mapping) and moved.target(got) is None:
            return got
        return moved.carried(raw)  # its mover stopped before writing it under the new id: as it moved

    async def update_run(self, task_id: str, run_id: str, change: RunChange[T]) -> T:
        """:meth:`update` of a run's record, wherever it is: a change aimed at
        the id a renamed task was shown under (a replica that saw only its
        earlier events, a decision naming that id) follows the alias to the
        record under the task's id, merging in first what the alias carries
        (a move its writer did not finish)."""
        got = await self.update(NAMESPACE, run_key(task_id, run_id), _guard(change))
        if not isinstance(got, moved.Moved):
            return got
        await self._settle(got, run_id)
        again = await self.update(NAMESPACE, run_key(got.to, run_id), _guard(change))
        if isinstance(again, moved.Moved):  # a run renames once: never an alias to an alias
            raise RuntimeError(f"run {run_id} of task {task_id}: moved to {got.to}, which moved too")
        return again

    async def _settle(self, m: moved.Moved, run_id: str) -> None:
        """What an alias carries, in the record it points to (a read, and no
        write, once its move was written whole)."""
        src = moved.carried(m.alias)
        await self.update(NAMESPACE, run_key(m.to, run_id), lambda rec: (moved.merge(rec, src), None))

    async def move(self, view: TaskView, former: str) -> None:
        """The run's record moved from ``former`` (the id the task was shown
        under, checked by moved.former_of) to ``view.task_id``: the alias
        left under the old id, the record merged under the new one (created
        when none was written there yet), the run listed under both ids.
        In one transaction where the store batches; else the alias first,
        which carries the record, so nothing is lost in between. Repeated
        (a replay, another replica): nothing more is written."""
        run_id, to = view.run_id, view.task_id
        src: list[dict[str, Any] | None] = [None]

        def leave(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            went = moved.target(rec)
            if went is not None and rec is not None:  # moved before: merged again below (a no-op when whole)
                src[0] = moved.carried(rec) if went == to else None
                return None, None
            left = moved.alias(rec, view, former)
            src[0] = moved.carried(left)
            return left, None

        def take(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            return (None if src[0] is None else moved.merge(rec, src[0], view)), None

        updates: list[tuple[str, str, RunChange[None]]] = [
            (NAMESPACE, run_key(former, run_id), leave),
            (NAMESPACE, run_key(to, run_id), take),
            (RUNS_NAMESPACE, to, listing(run_id, view.started_ns)),
            (RUNS_NAMESPACE, former, listing(run_id, view.started_ns)),
        ]
        if self.batches:
            await self.update_many(updates)
        else:
            for ns, key, change in updates:
                await self.update(ns, key, change)
        if src[0] is not None and runs.open_requests(src[0], 0):
            await self._retitle(former, to, run_id)

    async def _retitle(self, former: str, to: str, run_id: str) -> None:
        """The run's open requests listed under the task's id, not the old one."""

        def change(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            items = [dict(x) for x in (value or {}).get("items") or [] if isinstance(x, Mapping)]
            hit = [x for x in items if x.get("run_id") == run_id and x.get("task_id") == former]
            for x in hit:
                x["task_id"] = to
            return ({"items": items} if hit else None), None

        await self.update(REQUESTS_NAMESPACE, OPEN_KEY, change)

    async def runs_of(self, task_id: str) -> list[str]:
        """The task id's runs, oldest first."""
        raw = await self.store.get(RUNS_NAMESPACE, task_id)
        got = raw.get("runs") if isinstance(raw, Mapping) else None
        if not isinstance(got, list):
            return []
        pairs = [p for p in got if isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)]
        return [p[0] for p in sorted(pairs, key=lambda p: (p[1] if isinstance(p[1], int) else 0, p[0]))]

    async def add_run(self, task_id: str, run_id: str, started_ns: int) -> None:
        await self.update(RUNS_NAMESPACE, task_id, listing(run_id, started_ns))

    @property
    def batches(self) -> bool:
        """Whether :meth:`update_many` writes in one transaction of the store."""
        return isinstance(self.store, BatchStateStore)

    async def update_many(
        self, updates: Sequence[tuple[str, str, Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]]]]
    ) -> list[T]:
        """:meth:`update` of each key in order, in one transaction of a
        :class:`BatchStateStore` (no other writer comes between a read and
        its write, so each is a compare-and-set that wins); each change's
        result. The changes run on the store's thread."""
        store = self.store
        assert isinstance(store, BatchStateStore)
        results: list[Any] = [None] * len(updates)

        def versioned(i: int, change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]]) -> Change:
            def apply(raw: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], int] | None:
                value, results[i] = change(dict(raw) if isinstance(raw, Mapping) else None)
                if value is None:
                    return None
                value["v"] = version = _version(raw) + 1
                return value, version

            return apply

        await store.update_many([(ns, key, versioned(i, ch)) for i, (ns, key, ch) in enumerate(updates)], self.owner)
        decided = {key for ns, key, _ in updates if ns == NAMESPACE}
        if decided:
            self._wake()
            # A store that notifies many keys at once (PostgreSQL: one round trip).
            many = getattr(self.store, "notify_many", None)
            if many is None:
                for key in decided:
                    await self._notify(key)
            else:
                try:
                    await many(NAMESPACE, sorted(decided))
                except Exception:  # best effort, as one key's notification
                    pass
        return results

    async def open_run(self, view: TaskView, requests: tuple[ApprovalRequest, ...] = ()) -> None:
        """Record a run as running (if not recorded yet), with ``requests`` open."""

        def change(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            fresh = rec is None
            rec = runs.new_record(view) if rec is None else rec
            added = [runs.add_request(rec, r) for r in requests]
            return (rec if fresh or any(added) else None), None

        await self.update_run(view.task_id, view.run_id, change)
        await self.add_run(view.task_id, view.run_id, view.started_ns)

    async def apply(self, d: Decision, now_ns: int) -> runs.Judgement:
        """Judge ``d`` against its run's record (``d.run_id`` named) and, when
        it applies, record it: one compare-and-set."""

        def change(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, runs.Judgement]:
            if rec is None:
                return None, runs.Judgement("refused", "unknown_task", "no such run")
            moved = d.action == "approve" and floors.refloor(rec, d.approval_id, self.floor, now_ns)
            got = runs.apply(rec, d, now_ns)
            return (rec if moved or got.outcome == "applied" or got.code == "expired" else None), got

        return await self.update_run(d.task_id, d.run_id, change)

    async def apply_granted(self, d: Decision, now_ns: int) -> runs.Judgement:
        """:meth:`apply` of a standing grant's decision, only while its grant
        is live, in one step with revocation: a revoke answered before it
        is seen, and one answered after it came after the approval (one
        transaction of a :class:`BatchStateStore` over both keys; inside a
        process, the grants' turn held throughout)."""
        live: list[bool] = [False]

        def check(value: dict[str, Any] | None) -> tuple[None, None]:
            g = next((g for g in grants.grants_of(value) if g.grant_id == d.grant_id), None)
            live[0] = g is not None and g.live(now_ns)
            return None, None

        def change(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, runs.Judgement]:
            if not live[0]:
                return None, runs.Judgement("refused", "denied", f"grant {d.grant_id} was revoked or has ended")
            if rec is None:
                return None, runs.Judgement("refused", "unknown_task", "no such run")
            moved = floors.refloor(rec, d.approval_id, self.floor, now_ns)
            got = runs.apply(rec, d, now_ns)
            return (rec if moved or got.outcome == "applied" or got.code == "expired" else None), got

        async with self._turns.of(grants.NAMESPACE, grants.KEY):
            if self.batches:
                task_id = d.task_id
                for _ in range(2):  # the record's own key, then where a renamed task's alias points
                    run = (NAMESPACE, run_key(task_id, d.run_id), _guard(change))
                    done = await self.update_many([(grants.NAMESPACE, grants.KEY, check), run])
                    if not isinstance(done[1], moved.Moved):
                        return cast(runs.Judgement, done[1])
                    await self._settle(done[1], d.run_id)
                    task_id = done[1].to
                raise RuntimeError(f"run {d.run_id} of task {d.task_id}: moved to {task_id}, which moved too")
            # One process's store (memory): its revokes wait for this turn.
            raw = await self.store.get(grants.NAMESPACE, grants.KEY)
            check(dict(raw) if isinstance(raw, Mapping) else None)
            return await self.update_run(d.task_id, d.run_id, change)

    async def permit(
        self,
        task_id: str,
        run_id: str,
        approval_id: str,
        action: Mapping[str, Any] | None,
        now_ns: int,
        by: str,
        agent: str | None = None,
        key: str | None = None,
    ) -> runs.Permit:
        """:func:`consume.permit` in one compare-and-set: of two replicas (or an
        agent and its restarted self) checking one approval, one wins. With
        ``agent`` (proven by its own token), only an approval that agent asked."""

        def change(rec: dict[str, Any] | None) -> tuple[dict[str, Any] | None, runs.Permit]:
            if rec is None:
                return None, runs.Permit(False, "no such run", "unknown_task")
            asked = str((runs.requests_of(rec).get(approval_id) or {}).get("agent") or rec.get("agent_id") or "")
            if agent is not None and asked != agent:
                return None, runs.Permit(False, f"approval {approval_id} was asked by agent {asked!r}", "wrong_agent")
            got = consume.permit(rec, approval_id, action, now_ns, by, key, self.floor)
            return (rec if got.permitted else None), got

        return await self.update_run(task_id, run_id, change)

    async def read(self, task_id: str, run_id: str | None = None) -> list[Decision]:
        """The decisions of one run (the latest of the task id when not named)."""
        if run_id is None:
            known = await self.runs_of(task_id)
            if not known:
                return []
            run_id = known[-1]
        return runs.decisions_of(await self.record(task_id, run_id))

    # -- open requests -------------------------------------------------------

    async def open_list(self) -> list[dict[str, Any]]:
        raw = await self.store.get(REQUESTS_NAMESPACE, OPEN_KEY)
        items = raw.get("items") if isinstance(raw, Mapping) else None
        return [dict(x) for x in items if isinstance(x, Mapping)] if isinstance(items, list) else []

    async def list_open(self, task_id: str, run_id: str, agent_id: str, reqs: list[ApprovalRequest]) -> None:
        def change(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            items = [dict(x) for x in (value or {}).get("items") or [] if isinstance(x, Mapping)]
            have = {(x.get("run_id"), x.get("approval_id"), x.get("digest")) for x in items}
            new = [r for r in reqs if (run_id, r.approval_id, r.digest) not in have]
            if not new:
                return None, None
            ids = {r.approval_id for r in new}
            items = [x for x in items if not (x.get("run_id") == run_id and x.get("approval_id") in ids)]
            for r in new:
                items.append({**runs.request_to_dict(r), "task_id": task_id, "run_id": run_id, "agent_id": agent_id})
            return {"items": items[-MAX_OPEN:]}, None

        await self.update(REQUESTS_NAMESPACE, OPEN_KEY, change)

    async def unlist(self, closed: set[tuple[str, str]]) -> None:
        """Drop (run id, approval id) pairs from the open list."""
        if not closed:
            return

        def change(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            items = [dict(x) for x in (value or {}).get("items") or [] if isinstance(x, Mapping)]
            left = [x for x in items if (x.get("run_id"), x.get("approval_id")) not in closed]
            return ({"items": left} if len(left) != len(items) else None), None

        await self.update(REQUESTS_NAMESPACE, OPEN_KEY, change)

    # -- refusals ------------------------------------------------------------

    async def first_denial(self, intervention_id: str, reason: str) -> bool:
        """True the first time this refused click is seen (anywhere): a
        refused click is not in the run's list, so its replays are told
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

    # -- waiting -------------------------------------------------------------

    async def wait(self, task_id: str, after: int, timeout_s: float, run_id: str | None = None) -> list[Decision]:
        """The run's decisions past the first ``after``, waiting up to
        ``timeout_s`` for one when there are none yet. Without a run, the
        task id's latest (looked up again each round: a run may start)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        poll_s = self._poll_s
        if timeout_s > 0 and await self._watching():
            poll_s = self._watched_poll_s
        while True:
            changed = self._changed
            items = await self.read(task_id, run_id)
            if len(items) > after:
                return items[after:]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            # Woken at once by a change recorded here or notified by another
            # process (any run's: then the record is read again); else polled.
            try:
                await asyncio.wait_for(changed.wait(), min(poll_s, left))
            except TimeoutError:
                pass


__all__ = [
    "DENIED_NAMESPACE",
    "NAMESPACE",
    "POLL_S",
    "REQUESTS_NAMESPACE",
    "RUNS_NAMESPACE",
    "WATCHED_POLL_S",
    "ControlLog",
    "decision_from_dict",
    "decision_to_dict",
]
