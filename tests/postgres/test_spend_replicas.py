"""Budgets shared by replicas through the PostgreSQL state store:
concurrent replicas lose no spending and count none twice, each level is said
once per scope and window (one event id), a restarted replica keeps the day's
total and does not say a level again, and the outlier book is seeded from the
tasks in ``agent_tasks``."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from spanvisor.budgets.ledger import BudgetSettings, Crossing, Ledger
from spanvisor.budgets.outliers import MIN_HISTORY, OutlierBook
from spanvisor.budgets.spend import NAMESPACE, SpendSync
from spanvisor.events import BudgetWarning, TaskFinished, stable_id
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from spanvisor_postgres.sink import PostgresSink
from spanvisor_postgres.statestore import PostgresStateStore

from .conftest import fetch, make_config, run


def _wait_until(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


BUDGETS = {"agent_day_usd": {"*": 2.0}, "day_usd": 3.0, "month_usd": 5.0}
_DAYS = itertools.count()


def _said(crossings: list[Crossing]) -> list[tuple[str, str, float]]:
    return [(scope, subject, level) for scope, subject, level, _, _ in crossings]


def _reached(total: float, budget: float) -> list[float]:
    return [lv for lv in (0.8, 1.0) if total >= lv * budget - 1e-9]


STEP = st.tuples(st.sampled_from(["rivet", "ember"]), st.integers(0, 90), st.booleans())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.lists(STEP, min_size=1, max_size=15), b=st.lists(STEP, min_size=1, max_size=15), seed=st.integers(0, 99))
def test_concurrent_replicas_lose_nothing_and_say_each_level_once_by_id(
    db_url: str, tmp_path_factory: pytest.TempPathFactory, a: list[Any], b: list[Any], seed: int
) -> None:
    # A day and month of their own per example: the database is the module's.
    when = int(datetime(2030 + next(_DAYS), 1, 15, 12, tzinfo=UTC).timestamp() * 1e9)
    day = datetime.fromtimestamp(when / 1e9, UTC).strftime("%Y-%m-%d")
    month = day[:7]
    config = make_config(tmp_path_factory.mktemp("spend"), db_url, db_pool_size=2)

    async def replica(sync: SpendSync, steps: list[Any], rng: random.Random, said: list[Any]) -> None:
        for agent, cents, sync_now in steps:
            said += _said(sync.ledger.add(agent, cents / 100, when))
            if sync_now:
                await sync.sync()  # racing the other replica's writes for real
            await asyncio.sleep(rng.choice((0, 0, 0.001)))

    async def main() -> None:
        stores = [await PostgresStateStore.open(config), await PostgresStateStore.open(config)]
        try:
            await check(stores)
        finally:
            for store in stores:
                await store.close()

    async def check(stores: list[PostgresStateStore]) -> None:
        syncs = []
        for owner, store in zip(("replica-a", "replica-b"), stores, strict=True):
            sync = SpendSync(Ledger(BudgetSettings(**BUDGETS)), every_s=3600, clock=lambda: when)
            sync.start(store, owner)
            assert await sync.ready()
            syncs.append(sync)
        said: list[tuple[str, str, float]] = []
        rng = random.Random(seed)
        await asyncio.gather(replica(syncs[0], a, rng, said), replica(syncs[1], b, rng, said))
        for s in (*syncs, syncs[0]):
            await s.sync()
        for s in (*syncs, syncs[0]):  # one more call each, after reading the other's figures
            await s.sync()
            for agent in ("rivet", "ember"):
                said += _said(s.ledger.add(agent, 0.0, when))
        spent = Counter[str]()
        for agent, cents, _ in a + b:
            spent[agent] += cents
        total = sum(spent.values()) / 100
        expected = {("day", day, lv) for lv in _reached(total, 3.0)}
        expected |= {("month", month, lv) for lv in _reached(total, 5.0)}
        for agent, cents in spent.items():
            expected |= {("agent_day", f"{agent}:{day}", lv) for lv in _reached(cents / 100, 2.0)}
        assert set(said) == expected
        for s in syncs:
            report = await s.report()
            assert report["shared"] is True and report["store"] == "PostgresStateStore"
            assert report["today"]["used_usd"] == round(total, 9), (report, a, b)
            assert {agent: f["used_usd"] for agent, f in report["agents"].items()} == {
                agent: round(spent[agent] / 100, 9) for agent in ("rivet", "ember")
            }
        stored = await stores[0].get(NAMESPACE, day)
        assert stored is not None
        by = stored["keys"][f"day:{day}"]["by"]
        assert sum(by.values()) == sum(spent.values()) * 10_000_000
        for s in syncs:
            await s.stop()

    run(main)


# -- two pipelines (the serve path) and a restart -----------------------------------------


class _Replica:
    """A pipeline with its own PostgreSQL state store and an SDK tracer in front."""

    def __init__(self, tmp: Path, url: str, owner: str) -> None:
        config = make_config(
            tmp,
            url,
            state_store="postgres",
            replica_id=owner,
            budget_day_usd=1.0,
            budget_agent_day_usd={"*": 10.0},
            shutdown_timeout_s=5.0,
        )
        self.memory = InMemorySink()
        self.pipeline = Pipeline(config, sinks=[self.memory], path="receiver")
        self.processor = SpanvisorSpanProcessor(pipeline=self.pipeline)
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("agent")
        assert _wait_until(lambda: self.pipeline.spend.started, 10)
        assert asyncio.run(self.pipeline.spend.ready(10))

    def task(self, name: str, costs: list[float]) -> None:
        with self.tracer.start_as_current_span("task", attributes={cv.TASK_NAME: name, cv.AGENT_ID: "rivet"}):
            for usd in costs:
                with self.tracer.start_as_current_span("chat", attributes={cv.GEN_AI_OPERATION: "chat"}) as call:
                    call.set_attributes(
                        {cv.GEN_AI_REQUEST_MODEL: "m", cv.GEN_AI_INPUT: 10, cv.GEN_AI_OUTPUT: 1, cv.OI_COST: usd}
                    )
        assert self.pipeline.force_flush(10)

    def report(self) -> dict[str, Any]:
        return asyncio.run(self.pipeline.spend.report())  # hops onto the pipeline's loop, syncing first

    def warnings(self) -> list[BudgetWarning]:
        return [e for e in self.memory.events if isinstance(e, BudgetWarning) and e.scope != "task"]

    def close(self) -> None:
        self.pipeline.shutdown(5)


def test_two_replicas_share_the_days_total_and_a_restart_keeps_it(db_url: str, tmp_path: Path) -> None:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    a = _Replica(tmp_path / "a", db_url, "replica-a")
    b = _Replica(tmp_path / "b", db_url, "replica-b")
    try:
        a.task("first", [0.5, 0.35])  # 0.85 of the day's $1: 80 %
        assert [(w.subject, w.level) for w in a.warnings()] == [(day, 0.8)]
        a.report()  # a's figures are in the store
        assert b.report()["today"]["used_usd"] == pytest.approx(0.85)
        b.task("second", [0.1, 0.1])  # 1.05: b says 100 %, never 80 % again
        assert [(w.subject, w.level) for w in b.warnings()] == [(day, 1.0)]
        said = {w.event_id for w in a.warnings() + b.warnings()}
        assert said == {stable_id("budget", "day", "usd", day, lv) for lv in (0.8, 1.0)}
        b.report()  # b's figures are in the store (its own sync would within a second)
        report = a.report()
        assert report["today"]["used_usd"] == pytest.approx(1.05)
        assert {(d["scope"], d["level"]) for d in report["said"]} == {("day", 0.8), ("day", 1.0)}
    finally:
        a.close()
    again = _Replica(tmp_path / "a", db_url, "replica-a")  # a, restarted
    try:
        assert again.report()["today"]["used_usd"] == pytest.approx(1.05)
        again.task("third", [0.2])
        assert again.warnings() == []  # 80 % and 100 % were said before the restart
        again.report()  # its figures are in the store
        assert b.report()["today"]["used_usd"] == pytest.approx(1.25)
        assert b.report()["agents"]["rivet"]["used_usd"] == pytest.approx(1.25)
    finally:
        again.close()
        b.close()


# -- outliers from history ------------------------------------------------------------------


def test_the_outlier_book_is_seeded_from_the_agents_recent_tasks(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    config = make_config(tmp_path, url)
    memory = InMemorySink()
    pipeline = Pipeline(config, sinks=[PostgresSink(), memory])
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
    tracer = provider.get_tracer("agent")
    for i in range(MIN_HISTORY + 5):
        with tracer.start_as_current_span("task", attributes={cv.TASK_NAME: f"t{i}", cv.AGENT_ID: "vera"}):
            with tracer.start_as_current_span("chat") as call:
                tokens = 1_000 + 10 * (i % 4)
                call.set_attributes({cv.GEN_AI_REQUEST_MODEL: "m", cv.GEN_AI_INPUT: tokens, cv.OI_COST: 0.01})
    with tracer.start_as_current_span("task", attributes={cv.TASK_NAME: "failed", cv.AGENT_ID: "vera"}) as root:
        root.set_status(Status(StatusCode.ERROR, "not counted"))  # only complete tasks are history
    assert pipeline.force_flush(10)
    pipeline.shutdown(5)
    finished = [e for e in memory.events if isinstance(e, TaskFinished) and e.outcome == "complete"]
    assert len(finished) == MIN_HISTORY + 5

    async def main() -> None:
        store = await PostgresStateStore.open(config)
        try:
            history = await store.recent_tasks(MIN_HISTORY, 10)
            assert list(history) == ["vera"] and len(history["vera"]) == MIN_HISTORY
            rows = await fetch(
                url,
                "SELECT input_tokens + output_tokens AS t FROM agent_tasks"
                " WHERE status = 'complete' ORDER BY ended_at DESC LIMIT $1",
                MIN_HISTORY,
            )
            assert [h[0] for h in history["vera"]] == [float(r["t"]) for r in reversed(rows)]  # oldest first
            assert all(h[1] == pytest.approx(0.01) and h[2] >= 0 for h in history["vera"])
            book = OutlierBook()
            sync = SpendSync(Ledger(BudgetSettings()), book)
            sync.start(store, "x")
            await sync.ready()
            assert sync.seeded == MIN_HISTORY + 5  # all it has: fewer than HISTORY
            assert book.judge("vera", 4_000, 0.01, 0.0) == ("4.0x this agent's usual tokens",)
            await sync.stop()
        finally:
            await store.close()

    run(main)
    # A fresh pipeline on the same database knows the agent's usual from its
    # first task: the outlier note needs no warm-up in this process.
    memory = InMemorySink()
    pipeline = Pipeline(config, sinks=[PostgresSink(), memory])
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("task", attributes={cv.TASK_NAME: "big", cv.AGENT_ID: "vera"}):
        with tracer.start_as_current_span("chat") as call:
            call.set_attributes({cv.GEN_AI_REQUEST_MODEL: "m", cv.GEN_AI_INPUT: 4_000, cv.OI_COST: 0.01})
    assert pipeline.force_flush(10)
    pipeline.shutdown(5)
    big = [e for e in memory.events if isinstance(e, TaskFinished)]
    # Tokens are the deterministic measure here (durations vary on a loaded machine).
    assert big and "4.0x this agent's usual tokens" in big[0].outliers, big
