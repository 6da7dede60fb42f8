"""A run its root renamed (issue 66): the region made under the derived id D
is the run's region under X too, PATCHed in place (D's tag kept, X's added),
never a second one, also by a sink with no memory of D (a restart)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.events import Checkpoint, TaskFinished, TaskStarted, TaskView
from spanvisor.sink import SinkContext, SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.settings import SETTINGS

DERIVED = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
NAMED = "job-42"
T0 = 1_700_000_000_000_000_000


def _events() -> tuple[TaskStarted, TaskFinished]:
    v = TaskView(
        task_id=DERIVED,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        root_span_id="b7ad6b7169203331",
        agent_id="rivet",
        run_id="run-1",
        started_ns=T0,
        updated_ns=T0,
        seq=1,
    )
    done = replace(v, task_id=NAMED, former_id=DERIVED, status="complete", ended_ns=T0 + 10**9, seq=3)
    return (
        TaskStarted(event_id="e1", time_ns=T0, task=v),
        TaskFinished(event_id="e3", time_ns=T0 + 10**9, task=done, outcome="complete", duration_s=1.0),
    )


def test_renamed_run_keeps_its_one_region_across_a_restart() -> None:
    start, finish = _events()

    async def main() -> None:
        async with FakeGrafana() as fake:
            config = Config.load(env={}, extra=SETTINGS).with_values(grafana_url=fake.url, grafana_token=fake.token)
            store = InMemoryStateStore()

            async def sink() -> GrafanaAnnotationSink:
                s = GrafanaAnnotationSink()
                await s.start(SinkContext(config=config, state_store=store, stats=PipelineStats()))
                return s

            first = await sink()
            assert await first.export([start]) == SinkResult.SUCCESS
            await first.shutdown(5)
            second = await sink()  # no memory of D: the store says where the region is
            try:
                assert await second.export([finish]) == SinkResult.SUCCESS
                assert await second.export([start, finish]) == SinkResult.SUCCESS  # a replay changes nothing
            finally:
                await second.shutdown(5)
            anns = list(fake.annotations.values())
            assert len(anns) == 1, anns
            tags = anns[0]["tags"]
            assert f"task:{NAMED}" in tags and f"task:{DERIVED}" in tags and "run:run-1" in tags, tags
            assert "timeEnd" in anns[0] and "complete" in anns[0]["text"].lower()
            assert (await store.get("grafana.annotation", f"{NAMED}/run-1")) == {"id": anns[0]["id"]}

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_checkpoint_that_renames_moves_nothing_twice() -> None:
    """Any renamed view moves the key (not only a finish): later finishes find it."""
    start, finish = _events()
    cp = Checkpoint(event_id="e2", time_ns=T0 + 5, task=replace(finish.task, status="working", ended_ns=None, seq=2))

    async def main() -> None:
        async with FakeGrafana() as fake:
            config = Config.load(env={}, extra=SETTINGS).with_values(grafana_url=fake.url, grafana_token=fake.token)
            s = GrafanaAnnotationSink()
            await s.start(SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats()))
            try:
                assert await s.export([start, cp, finish]) == SinkResult.SUCCESS
            finally:
                await s.shutdown(5)
            assert len(fake.annotations) == 1

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_finish_still_under_the_former_id_leaves_the_renamed_region_alone() -> None:
    """A replica that never saw the root ends the run under D with its
    stand-in view (lost, say): the region, renamed meanwhile, keeps what the
    root's finish showed, and nothing is dropped as an internal error."""
    start, finish = _events()
    stale = TaskFinished(
        event_id="e9",
        time_ns=T0 + 2 * 10**9,
        task=replace(start.task, status="lost", ended_ns=T0 + 2 * 10**9, seq=9),
        outcome="lost",
        duration_s=2.0,
    )

    async def main() -> None:
        async with FakeGrafana() as fake:
            config = Config.load(env={}, extra=SETTINGS).with_values(grafana_url=fake.url, grafana_token=fake.token)
            stats = PipelineStats()
            s = GrafanaAnnotationSink()
            await s.start(SinkContext(config=config, state_store=InMemoryStateStore(), stats=stats))
            try:
                assert await s.export([start, finish]) == SinkResult.SUCCESS
                shown = dict(next(iter(fake.annotations.values())))
                assert await s.export([stale]) == SinkResult.SUCCESS
            finally:
                await s.shutdown(5)
            assert list(fake.annotations.values()) == [shown]
            assert stats.value("dropped_total", sink=s.name, reason="grafana_internal_error") == 0

    asyncio.run(asyncio.wait_for(main(), 30))
