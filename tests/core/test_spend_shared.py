"""Day and month spending shared through the state store:
pipelines/ledgers that share one store say each budget level once per scope
and window, their totals are the sum, a restart keeps the day's total and
does not say a level again, and ``SpendSync.report()`` says all of it."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.budgets.ledger import BudgetSettings, Crossing, KeyShare, Ledger
from spanvisor.budgets.outliers import MIN_HISTORY, OutlierBook
from spanvisor.budgets.spend import NAMESPACE, RETIRED, SpendSync, merged
from spanvisor.events import stable_id
from spanvisor.statestores.api import StateStore
from spanvisor.statestores.local import LocalStateStore
from spanvisor.statestores.memory import InMemoryStateStore

T = TypeVar("T")
NOV_22 = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp() * 1e9)
BUDGETS = {"agent_day_usd": {"*": 2.0}, "day_usd": 3.0, "month_usd": 5.0}


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro())  # type: ignore[arg-type]


def _sync(store: StateStore, owner: str, ledger: Ledger | None = None, **kw: Any) -> SpendSync:
    sync = SpendSync(ledger or Ledger(BudgetSettings(**BUDGETS)), every_s=3600, clock=lambda: NOV_22, **kw)
    sync.start(store, owner)
    return sync


def _said(crossings: list[Crossing]) -> list[tuple[str, str, float]]:
    return [(scope, subject, level) for scope, subject, level, _, _ in crossings]


def _event_id(scope: str, subject: str, level: float) -> str:
    # What tracking/taskbudget.py gives a ledger scope's BudgetWarning.
    return stable_id("budget", scope, "usd", subject, level)


def _reached(total: float, budget: float) -> list[float]:
    return [lv for lv in (0.8, 1.0) if total >= lv * budget - 1e-9]


# One step: which of two replicas, which agent, how many cents, whether both sync after it.
STEP = st.tuples(st.integers(0, 1), st.sampled_from(["rivet", "ember"]), st.integers(0, 90), st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=25), always_sync=st.booleans())
def test_two_replicas_say_each_level_once_and_their_totals_add_up(
    steps: list[tuple[int, str, int, bool]], always_sync: bool
) -> None:
    async def main() -> None:
        store = InMemoryStateStore()
        syncs = [_sync(store, "replica-a"), _sync(store, "replica-b")]
        said: list[tuple[str, str, float]] = []
        spent: Counter[str] = Counter()
        for who, agent, cents, sync_now in steps:
            said += _said(syncs[who].ledger.add(agent, cents / 100, NOV_22))
            spent[agent] += cents
            if always_sync or sync_now:
                # Each replica writes, then reads what the other wrote.
                for s in (*syncs, syncs[0]):
                    await s.sync()
        # Every replica reads what the other wrote, then takes one more call:
        # a level reached only by the two together is said then.
        for s in syncs:
            await s.sync()
        for s in syncs:
            await s.sync()  # as every second: what the other one said since
            for agent in ("rivet", "ember"):
                said += _said(s.ledger.add(agent, 0.0, NOV_22))
            await s.sync()
        ids = Counter(_event_id(*k) for k in said)
        if always_sync:
            assert all(n == 1 for n in ids.values()), said  # each level once, even by count
        total = sum(spent.values()) / 100
        expected = {("day", "2026-11-22", lv) for lv in _reached(total, 3.0)}
        expected |= {("month", "2026-11", lv) for lv in _reached(total, 5.0)}
        for agent, cents in spent.items():
            expected |= {("agent_day", f"{agent}:2026-11-22", lv) for lv in _reached(cents / 100, 2.0)}
        assert set(said) == expected  # by event id: each level once per scope and window
        for s in syncs:
            report = await s.report()
            assert report["today"]["used_usd"] == round(total, 9)
            assert report["month"]["used_usd"] == round(total, 9)
            for agent, cents in spent.items():
                assert report["agents"][agent]["used_usd"] == round(cents / 100, 9)
            assert {(d["scope"], d["subject"], d["level"]) for d in report["said"]} == expected
        for s in syncs:
            await s.stop()

    _run(main)


def test_levels_are_said_in_order_and_the_store_holds_each_owners_figure() -> None:
    async def main() -> None:
        store = InMemoryStateStore()
        a, b = _sync(store, "a"), _sync(store, "b")
        got = _said(a.ledger.add("rivet", 2.5, NOV_22))
        assert got == [
            ("agent_day", "rivet:2026-11-22", 0.8),
            ("agent_day", "rivet:2026-11-22", 1.0),
            ("day", "2026-11-22", 0.8),
        ]
        await a.sync()
        await b.sync()
        # b spends on its own, but the day's total is a's plus b's.
        got = _said(b.ledger.add("ember", 0.6, NOV_22))
        assert got == [("day", "2026-11-22", 1.0)]
        await b.sync()
        stored = await store.get(NAMESPACE, "2026-11-22")
        assert stored is not None
        assert stored["keys"]["day:2026-11-22"]["by"] == {"a": 2_500_000_000, "b": 600_000_000}
        assert stored["keys"]["day:2026-11-22"]["said"] == [0.8, 1.0]
        await a.stop()
        await b.stop()

    _run(main)


def test_a_retried_or_raced_write_counts_nothing_twice() -> None:
    share = {"day:2026-11-22": KeyShare("day", "2026-11-22", "", 7, (0.8,))}
    first = merged(None, share, "a")
    again = merged(first, share, "a")  # the same figure written twice: still 7
    assert again["keys"]["day:2026-11-22"]["by"] == {"a": 7} and again["v"] == first["v"] + 1
    other = merged(again, {"day:2026-11-22": KeyShare("day", "2026-11-22", "", 5, (1.0,))}, "b")
    assert other["keys"]["day:2026-11-22"]["by"] == {"a": 7, "b": 5}
    assert other["keys"]["day:2026-11-22"]["said"] == [0.8, 1.0]
    junk = merged({"v": "x", "keys": {"day:2026-11-22": {"by": "junk", "said": None}}}, share, "a")
    assert junk["v"] == 1 and junk["keys"]["day:2026-11-22"]["by"] == {"a": 7}


def test_the_day_rolls_over() -> None:
    async def main() -> None:
        store = InMemoryStateStore()
        sync = _sync(store, "a")
        late = int(datetime(2026, 11, 22, 23, 59, tzinfo=UTC).timestamp() * 1e9)
        early = late + 2 * 60 * 10**9
        got = _said(sync.ledger.add("rivet", 2.6, late))
        got += _said(sync.ledger.add("rivet", 2.6, early))
        assert got == [
            ("agent_day", "rivet:2026-11-22", 0.8),
            ("agent_day", "rivet:2026-11-22", 1.0),
            ("day", "2026-11-22", 0.8),
            ("agent_day", "rivet:2026-11-23", 0.8),
            ("agent_day", "rivet:2026-11-23", 1.0),
            ("day", "2026-11-23", 0.8),
            ("month", "2026-11", 0.8),
            ("month", "2026-11", 1.0),
        ]
        await sync.sync()
        assert (await store.get(NAMESPACE, "2026-11-23")) is not None
        sync._clock = lambda: early
        report = await sync.report()
        assert report["today"] == {"day": "2026-11-23", "used_usd": 2.6, "budget_usd": 3.0, "ratio": 2.6 / 3.0}
        assert report["month"]["used_usd"] == 5.2
        await sync.stop()

    _run(main)


def test_a_restart_keeps_the_days_total_and_does_not_say_a_level_again(tmp_path: Path) -> None:
    async def main() -> None:
        store = LocalStateStore(tmp_path / "state.db")  # durable: what serve uses without PostgreSQL
        await store.start()
        first = _sync(store, "replica-a")
        assert await first.ready()
        assert _said(first.ledger.add("rivet", 1.7, NOV_22)) == [("agent_day", "rivet:2026-11-22", 0.8)]
        await first.stop()  # the last write

        again = _sync(store, "replica-a")  # the same replica, restarted
        assert again.shared and again.ledger.shared
        # Before the first read the ledger holds the window's levels back...
        assert _said(again.ledger.add("rivet", 0.1, NOV_22)) == []
        assert await again.ready()
        # ...then knows agent_day's 0.8 was said and counts from 1.8.
        assert _said(again.ledger.add("rivet", 0.1, NOV_22)) == []
        got = _said(again.ledger.add("rivet", 0.6, NOV_22))
        assert got == [("agent_day", "rivet:2026-11-22", 1.0), ("day", "2026-11-22", 0.8)]
        report = await again.report()
        assert report["shared"] is True and report["store"] == "LocalStateStore"
        assert report["agents"]["rivet"]["used_usd"] == 2.5
        await again.stop()

        other = _sync(store, "pid-42")  # an agent process: a new owner each run
        assert await other.ready()
        assert _said(other.ledger.add("ember", 0.6, NOV_22)) == [("day", "2026-11-22", 1.0)]
        await other.sync()
        stored = await store.get(NAMESPACE, "2026-11-22")
        assert stored is not None
        assert stored["keys"]["day:2026-11-22"]["by"] == {"replica-a": 2_500_000_000, "pid-42": 600_000_000}
        await other.stop()
        await store.close()

    _run(main)


class _History(InMemoryStateStore):
    """A store that offers recent tasks (as the PostgreSQL one does)."""

    async def recent_tasks(self, n: int, max_agents: int) -> dict[str, list[tuple[float, float, float]]]:
        return {"rivet": [(1000.0 + i, 0.01, 30.0) for i in range(n)]}


def test_outliers_are_seeded_from_a_stores_history() -> None:
    async def main() -> None:
        book = OutlierBook()
        sync = _sync(_History(), "a", outliers=book)
        await sync.ready()
        assert sync.seeded >= MIN_HISTORY
        assert book.judge("rivet", 4000, 0.01, 30.0) == ("3.9x this agent's usual tokens",)
        await sync.stop()

    _run(main)


def test_the_report_without_budgets_or_spending() -> None:
    async def main() -> None:
        sync = _sync(InMemoryStateStore(), "a", ledger=Ledger(BudgetSettings()))
        report = await sync.report()
        assert report["shared"] is False and report["store"] == "InMemoryStateStore"
        assert report["today"] == {"day": "2026-11-22", "used_usd": 0.0, "budget_usd": None, "ratio": None}
        assert report["agents"] == {} and report["said"] == [] and report["levels"] == [0.8, 1.0]
        await sync.stop()

    _run(main)


def test_an_agent_process_hands_its_figures_to_retired_at_exit() -> None:
    async def main() -> None:
        store = InMemoryStateStore()
        me = f"host:{os.getpid()}"  # the owner id of an agent process (assemble.replica_id)
        for _ in range(2):  # two runs of an agent on one host
            sync = _sync(store, me)
            await sync.ready()
            sync.ledger.add("rivet", 0.25, NOV_22)
            await sync.stop()
        stored = await store.get(NAMESPACE, "2026-11-22")
        assert stored is not None
        assert stored["keys"]["day:2026-11-22"]["by"] == {RETIRED: 500_000_000}
        later = _sync(store, "replica-a")
        assert (await later.report())["today"]["used_usd"] == 0.5
        await later.stop()

    _run(main)


def test_the_ledger_forgets_old_days_and_stays_bounded() -> None:
    from spanvisor.budgets.ledger import MAX_KEYS

    ledger = Ledger(BudgetSettings(day_usd=1.0))
    day = 86_400 * 10**9
    for i in range(MAX_KEYS):  # one agent a day, for years
        ledger.add(f"a{i}", 0.01, NOV_22 + (i // 2) * day)
    assert len(ledger.entries("2026-11-22")) == 0  # long forgotten
    assert len(ledger._own) < MAX_KEYS
    for i in range(3 * MAX_KEYS):  # then many agents in one day
        ledger.add(f"b{i}", 0.0, NOV_22 + 10_000 * day)
    assert len(ledger._own) == 3 * MAX_KEYS + 2  # today's are kept: agents, the day, the month
