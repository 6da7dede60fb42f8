"""Two replicas, one PostgreSQL state store, one fake Grafana: one annotation per task."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from grafana_helpers import FakeClock, finished, run, started
from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.sink import SinkContext, SinkResult
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.settings import SETTINGS
from spanvisor_postgres.settings import SETTINGS as PG_SETTINGS
from spanvisor_postgres.statestore import PostgresStateStore


@pytest.fixture(scope="module")
def store_db(pg_server: Any) -> str:
    url: str = pg_server.database()
    return url


async def _replica(fake: FakeGrafana, db_url: str, data_dir: Path) -> GrafanaAnnotationSink:
    config = Config.load(env={}, extra=(*SETTINGS, *PG_SETTINGS)).with_values(
        grafana_url=fake.url,
        grafana_token=fake.token,
        grafana_retry_budget_s=5.0,
        database_url=db_url,
        data_dir=str(data_dir),
    )
    shared: dict[str, Any] = {}
    store = await PostgresStateStore.open(config, shared)
    # The real backoff schedule, on virtual time: retries do not wait for real.
    sink = GrafanaAnnotationSink(clock=FakeClock())
    await sink.start(SinkContext(config=config, state_store=store, stats=PipelineStats(), shared=shared))
    return sink


async def _stop(sink: GrafanaAnnotationSink) -> None:
    await sink.shutdown(1)
    assert sink.ctx is not None
    await sink.ctx.state_store.close()


def test_events_sprayed_over_two_replicas_make_one_annotation_per_task(store_db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            a = await _replica(fake, store_db, tmp_path / "a")
            b = await _replica(fake, store_db, tmp_path / "b")
            rng = random.Random(7)
            tasks = [f"spray-{i}" for i in range(30)]
            fake.fail_next("POST", 503, times=3, apply=True)  # some creates are ambiguous
            # Each event goes to a random replica, some to both (a Collector
            # retry); both replicas run at once, so a finish may reach one
            # replica while the other is still creating the annotation.
            to_a: list[Any] = []
            to_b: list[Any] = []
            for ev in [started(t) for t in tasks] + [finished(t) for t in tasks]:
                pick = rng.random()
                (to_a if pick < 0.5 else to_b).append(ev)
                if pick > 0.8:
                    to_a.append(ev)
            results = await asyncio.gather(a.export(to_a), b.export(to_b))
            assert results == [SinkResult.SUCCESS, SinkResult.SUCCESS]
            assert len(fake.annotations) == len(tasks)
            for task_id in tasks:
                (ann,) = fake.by_tag(f"task:{task_id}")
                assert ann["timeEnd"] > ann["time"] and "status:complete" in ann["tags"]
            await _stop(a)
            await _stop(b)

    run(main(), timeout=60)


def test_restart_with_the_postgres_store_patches_the_same_annotation(store_db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            first = await _replica(fake, store_db, tmp_path / "1")
            await first.export([started("restart-1")])
            await _stop(first)
            second = await _replica(fake, store_db, tmp_path / "2")
            await second.export([started("restart-1"), finished("restart-1")])
            await _stop(second)
            assert len(fake.calls("POST")) == 1 and len(fake.calls("PATCH")) == 1
            (ann,) = fake.annotations.values()
            assert ann["timeEnd"] > ann["time"]

    run(main(), timeout=60)
