"""Spending totals shared through the state store, and the budget report.

The tracker's :class:`~spanvisor.budgets.ledger.Ledger` counts what this
process spends per agent and day, per day and per month, and decides budget
levels from that plus what other owners stored. ``SpendSync`` keeps the two
in step, on the pipeline's loop, every ``SYNC_EVERY_S`` and at ``stop``.

**What is stored.** One key per window in namespace ``spend``: the day
(``2026-11-22``: the day total and every agent's total that day) or the month
(``2026-11``). Its value::

    {"v": 7, "keys": {"day:2026-11-22": {"scope": "day", "subject": "2026-11-22",
        "agent": "", "by": {"<owner>": <nano-dollars>, ...}, "said": [0.8]}, ...}}

Each owner (the sinks' replica id: host and data directory for ``serve``,
so stable across its restarts) writes only its own *cumulative* figure under
``by``; a key's total is the sum over owners. Writing absolute figures, not
deltas, makes a retried write harmless (nothing counted twice), and a
restarted owner takes its figure back at its first read of the window before
it writes (nothing lost). An agent process's owner id (host and pid) never
comes back, so at ``stop`` it moves its figures to the owner ``~retired``
(one compare-and-set): windows don't grow by one owner per agent run. A write is a compare-and-set: read, merge in this
owner's figures and the levels said (a union), ``put_if_newer`` at ``v + 1``;
a lost race merges the winner's value and tries again.

**Each level once.** A ledger level's ``BudgetWarning`` has an id that names
no task (``stable_id("budget", scope, unit, subject, level)``), and the levels
said are part of the stored value. After a sync every replica knows what any
replica said, and a restarted one reads it back before it says anything in
that window (the ledger holds a window's levels until its first read). Two
replicas crossing the same level within one sync interval both say it, with
one id: the PostgreSQL sink keeps one row; each says it in its own task's
thread. Nothing waits on the store in the tracker: that is the price.

**Which store.** The PostgreSQL store is shared by replicas and survives
restarts; the local SQLite store (``serve`` without PostgreSQL) survives
restarts of processes on one host; the in-memory store is this process only
(``report()`` says ``"shared": false``): it is synced all the same (pipelines
of one process handed the same store share totals), but levels are not held
for a first read, as there is nothing from before to read.

**History.** A store that also offers ``recent_tasks``
(:class:`~spanvisor.budgets.outliers.TaskHistory`) seeds the tracker's
outlier book at start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from spanvisor.budgets.ledger import Ledger
from spanvisor.budgets.outliers import HISTORY, MAX_AGENTS, OutlierBook, TaskHistory
from spanvisor.budgets.stored import RETIRED, merged, retired
from spanvisor.statestores.api import ConditionalStateStore, StateStore
from spanvisor.statestores.memory import InMemoryStateStore

log = logging.getLogger("spanvisor.spend")
T = TypeVar("T")

NAMESPACE = "spend"
SYNC_EVERY_S = 1.0
# Lost compare-and-set races in a row before this round gives up (the next round retries).
MAX_TRIES = 8
# How long a window's levels wait for an unreachable store before the
# process decides them from its own figures alone.
GIVE_UP_S = 10.0
# Bounds on a store call and on the last write at stop.
CALL_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
# While the store does not answer, rounds are tried further apart, doubling
# from ``every_s`` up to this; the outage is said once, and its end once.
BACKOFF_MAX_S = 60.0


class SpendSync:
    def __init__(
        self,
        ledger: Ledger,
        outliers: OutlierBook | None = None,
        *,
        every_s: float = SYNC_EVERY_S,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.ledger = ledger
        self.outliers = outliers
        self.every_s = every_s
        self._clock = clock
        self._store: StateStore | None = None
        self._me = f"pid-{os.getpid()}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._first_round = asyncio.Event()
        self._started_at = 0.0
        self.synced_ns: int | None = None
        # Since when (monotonic) the store has not answered, or None.
        self.outage_since: float | None = None
        self.errors = 0
        self.lost_races = 0
        self.seeded = 0

    # -- lifecycle (the pipeline's loop) ----------------------------------------

    def start(self, store: StateStore, replica_id: str = "") -> None:
        """Called on the pipeline loop once the state store is open; never raises.
        ``replica_id``: the sinks' (``SinkContext.replica_id``), so that totals
        and sink claims name one owner the same way."""
        self._store = store
        self._me = replica_id or self._me
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._started_at = time.monotonic()
        if self.shared:
            self.ledger.share()
        self._task = self._loop.create_task(self._run())

    @property
    def started(self) -> bool:
        return self._loop is not None

    @property
    def syncing(self) -> bool:
        """True when the store can take compare-and-set writes (every built-in one)."""
        return isinstance(self._store, ConditionalStateStore)

    @property
    def shared(self) -> bool:
        """True when totals go through a store other processes or a restart see
        (PostgreSQL, the local file); the in-memory store is this process's."""
        return self.syncing and not isinstance(self._store, InMemoryStateStore)

    async def ready(self, timeout_s: float = CALL_TIMEOUT_S) -> bool:
        """Wait (bounded) for the first round; True when it read the current
        day and month from the store. From any loop."""
        return await self._hop(lambda: self._ready(timeout_s))

    async def _ready(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._first_round.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.synced_ns is not None or not self.syncing

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.syncing and self.outage_since is not None:
            # Said when it began; trying again would only hold the exit up.
            log.debug("no last spending sync: the state store has not answered since the outage was said")
        elif self.syncing:
            try:
                await asyncio.wait_for(self._last_sync(), STOP_TIMEOUT_S)
            except Exception as exc:  # best effort: a replica's figure waits for its restart
                log.warning("the last spending sync failed: %s", exc)

    async def _last_sync(self) -> None:
        await self.sync()
        if self._me.endswith(f":{os.getpid()}"):
            # An agent process's owner id (host and pid) never comes back: its
            # figures move to RETIRED, so windows don't grow by one owner per run.
            for window in self.ledger.read_windows():
                await self._retire(window)

    async def _retire(self, window: str) -> None:
        store = self._store
        assert isinstance(store, ConditionalStateStore)
        current = await store.get(NAMESPACE, window)
        for _ in range(MAX_TRIES):
            value = retired(current, self._me)
            if value is None:
                return
            result = await store.put_if_newer(NAMESPACE, window, value, int(value["v"]), self._me)
            if result.won:
                return
            current = result.value

    async def flush(self) -> None:
        """Push what is unsent now (a flush barrier may call it)."""
        if self.syncing:
            await self.sync()

    async def _run(self) -> None:
        first = True
        pause = self.every_s
        while True:
            if self.syncing:
                try:
                    await self.sync()
                    pause = self.every_s
                    self._answered()
                except Exception as exc:
                    self.errors += 1
                    pause = min(BACKOFF_MAX_S, max(self.every_s, pause * 2))
                    self._unanswered(exc)
                    self._give_up_waiting()
            if first:
                # After the first read: the budgets' gate matters more than the history.
                first = False
                if self.outliers is not None and self.outage_since is None:
                    await self._seed_outliers()
                self._first_round.set()
            await asyncio.sleep(pause)

    def _where(self) -> str:
        """The store, as its setting names it (the PostgreSQL one: its masked URL)."""
        describe = getattr(self._store, "describe", None)
        try:
            return str(describe()) if describe is not None else f"the state store ({type(self._store).__name__})"
        except Exception:
            return f"the state store ({type(self._store).__name__})"

    def _unanswered(self, exc: BaseException) -> None:
        if self.outage_since is not None:
            log.debug("spending sync failed (%d so far): %s", self.errors, exc)
            return
        self.outage_since = time.monotonic()
        log.warning(
            "spending totals are not shared: %s does not answer (%s); budgets are decided from this process's "
            "own figures meanwhile, and it is tried again, less often (up to every %.0f s); said again when it answers",
            self._where(),
            exc,
            BACKOFF_MAX_S,
        )

    def _answered(self) -> None:
        if self.outage_since is None:
            return
        log.warning(
            "spending totals are shared again: %s answers (after %.0f s)",
            self._where(),
            time.monotonic() - self.outage_since,
        )
        self.outage_since = None

    def _give_up_waiting(self) -> None:
        if time.monotonic() - self._started_at < GIVE_UP_S:
            return
        for window in self.ledger.windows(self._clock()):
            if not self.ledger.was_read(window):
                self.ledger.open_window(window)

    async def _seed_outliers(self) -> None:
        store = self._store
        if not isinstance(store, TaskHistory) or self.outliers is None:
            return
        try:
            history = await asyncio.wait_for(store.recent_tasks(HISTORY, MAX_AGENTS), CALL_TIMEOUT_S * 2)
            self.seeded = self.outliers.seed(history)
        except Exception as exc:  # outliers are a nicety: judged from live tasks alone
            log.warning("could not read the agents' recent tasks: %s", exc)

    # -- one round ----------------------------------------------------------------

    async def sync(self) -> None:
        """Read every window the ledger needs and write what it has not sent."""
        assert self._lock is not None, "start() first"
        async with self._lock:
            for window in self.ledger.windows(self._clock()):
                await self._sync_window(window)
            self.synced_ns = self._clock()

    async def _sync_window(self, window: str) -> None:
        store = self._store
        assert isinstance(store, ConditionalStateStore)
        current = await asyncio.wait_for(store.get(NAMESPACE, window), CALL_TIMEOUT_S)
        self.ledger.merge(window, current, self._me)
        for _ in range(MAX_TRIES):
            changed, shares = self.ledger.unsent(window)
            if not changed:
                return
            value = merged(current, shares, self._me)
            version = int(value["v"])
            put = store.put_if_newer(NAMESPACE, window, value, version, self._me)
            result = await asyncio.wait_for(put, CALL_TIMEOUT_S)
            if result.won:
                self.ledger.sent(changed)
                self.ledger.merge(window, value, self._me)
                return
            self.lost_races += 1
            current = result.value
            self.ledger.merge(window, current, self._me)
        log.info("spending of %s: %d lost races in a row; trying again next round", window, MAX_TRIES)

    # -- the report (any loop) ------------------------------------------------------

    async def report(self) -> dict[str, Any]:
        """Today's and this month's totals and budgets, per agent today, the
        levels said, and whether the totals are shared: for the control API."""
        return await self._hop(self._report)

    async def _report(self) -> dict[str, Any]:
        if self.syncing and self._task is not None:
            try:
                await asyncio.wait_for(self.sync(), CALL_TIMEOUT_S)
            except Exception as exc:  # the report says how fresh it is
                log.warning("spending sync before a report failed: %s", exc)
        return build_report(self, self._clock())

    async def _hop(self, fn: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or here is loop or loop.is_closed():
            return await fn()

        async def run() -> T:
            return await fn()

        # Bounded: a pipeline shutting down may never run it.
        return await asyncio.wait_for(
            asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop)), CALL_TIMEOUT_S * 2
        )

    @property
    def store_name(self) -> str:
        return type(self._store).__name__ if self._store is not None else "none"

    @property
    def owner(self) -> str:
        return self._me


def build_report(sync: SpendSync, now_ns: int) -> dict[str, Any]:
    s = sync.ledger.settings
    when = datetime.fromtimestamp(now_ns / 1e9, UTC)
    day, month = when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")
    today = sync.ledger.entries(day)
    this_month = sync.ledger.entries(month)
    said: list[dict[str, Any]] = []
    for scope, subject, _, _, levels in sorted(today + this_month):
        said.extend({"scope": scope, "subject": subject, "level": lv} for lv in levels)

    def total(entries: list[Any], scope: str) -> float:
        return next((used for sc, _, _, used, _ in entries if sc == scope), 0.0)

    def figure(used: float, budget: float | None) -> dict[str, Any]:
        ratio = used / budget if budget else None
        return {"used_usd": round(used, 9), "budget_usd": budget, "ratio": ratio}

    agents = {
        agent: figure(used, s.for_agent(s.agent_day_usd, agent))
        for scope, _, agent, used, _ in sorted(today)
        if scope == "agent_day"
    }
    synced = sync.synced_ns
    return {
        "shared": sync.shared,
        "store": sync.store_name,
        "owner": sync.owner,
        "synced_at": datetime.fromtimestamp(synced / 1e9, UTC).isoformat() if synced else None,
        "sync_errors": sync.errors,
        "levels": sorted(s.levels),
        "today": {"day": day, **figure(total(today, "day"), s.day_usd)},
        "month": {"month": month, **figure(total(this_month, "month"), s.month_usd)},
        "agents": agents,
        "said": said,
    }


__all__ = ["NAMESPACE", "RETIRED", "SpendSync", "build_report", "merged", "retired"]
