"""Each run of a reused task id is its own region: run 2 never patches run
1's annotation (which keeps its outcome); both carry the task's tag, so the
drill-down shows them together, and a run tag tells them apart."""

from __future__ import annotations

import asyncio

from tests.core._reused import two_runs
from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.sink import SinkContext, SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.settings import SETTINGS


def test_each_run_gets_its_own_region() -> None:
    events = two_runs()
    runs = sorted({e.task.run_id for e in events})

    async def main() -> None:
        async with FakeGrafana() as fake:
            config = Config.load(env={}, extra=SETTINGS).with_values(grafana_url=fake.url, grafana_token=fake.token)
            sink = GrafanaAnnotationSink()
            await sink.start(SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats()))
            try:
                assert await sink.export(events) == SinkResult.SUCCESS
                anns = list(fake.annotations.values())
                assert len(anns) == 2, anns
                assert sorted(t for a in anns for t in a["tags"] if t.startswith("run:")) == [f"run:{r}" for r in runs]
                assert all("task:job-42" in a["tags"] for a in anns)
                texts = sorted(a["text"] for a in anns)
                assert any("error" in t.lower() for t in texts) and any("complete" in t.lower() for t in texts), texts
            finally:
                await sink.shutdown(5)

    asyncio.run(asyncio.wait_for(main(), 30))
