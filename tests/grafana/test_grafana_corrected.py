"""A TaskCorrected (the late-span rule) re-renders the task's region with the
corrected totals, keeping its outcome; sent twice, it is one PATCH."""

from __future__ import annotations

import asyncio

from tests.core._late import late_call_events
from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.sink import SinkContext, SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.settings import SETTINGS


def test_a_correction_updates_the_annotation_text() -> None:
    events = late_call_events()
    assert events[-1].kind == "TaskCorrected"

    async def main() -> None:
        async with FakeGrafana() as fake:
            config = Config.load(env={}, extra=SETTINGS).with_values(grafana_url=fake.url, grafana_token=fake.token)
            sink = GrafanaAnnotationSink()
            await sink.start(SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats()))
            try:
                assert await sink.export(events[:-1]) == SinkResult.SUCCESS
                [ann] = fake.annotations.values()
                assert "tokens in 1,000" in ann["text"]
                patches = len(fake.calls("PATCH"))
                assert await sink.export(events[-1:]) == SinkResult.SUCCESS
                assert await sink.export(events[-1:]) == SinkResult.SUCCESS
                [ann] = fake.annotations.values()
                assert "tokens in 6,000" in ann["text"] and "complete in" in ann["text"]
                assert len(fake.calls("PATCH")) == patches + 1
            finally:
                await sink.shutdown(5)

    asyncio.run(asyncio.wait_for(main(), 30))
