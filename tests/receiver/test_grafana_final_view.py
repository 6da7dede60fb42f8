"""The Grafana region of a task shows its newest final view: a late
span's correction PATCHes it (outcome and error kept), and an older final
view (the root delivered to two replicas, a replayed journal) never
replaces a newer one."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.events import Checkpoint, TaskFinished, TaskStarted, TaskView
from spanvisor.sink import SinkContext, SinkResult
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.settings import SETTINGS

T0 = 1_760_000_000_000_000_000
S = 1_000_000_000


def _view(seq: int, **kw: Any) -> TaskView:
    return TaskView(
        task_id="G1",
        trace_id="ab" * 16,
        root_span_id="cd" * 8,
        agent_id="rivet",
        task_name="Diagnose F47",
        started_ns=T0,
        updated_ns=T0,
        seq=seq,
        **kw,
    )


def _finished(seq: int, tokens: int) -> TaskFinished:
    v = _view(seq, status="error", ended_ns=T0 + 42 * S, input_tokens=tokens)
    return TaskFinished(
        event_id=f"finished-{seq}",
        time_ns=T0 + 42 * S,
        task=v,
        outcome="error",
        duration_s=42.0,
        error_type="ValueError",
        error_message="bad flange",
    )


async def _sink(fake: FakeGrafana) -> GrafanaAnnotationSink:
    config = Config.load(env={}, extra=SETTINGS).with_values(grafana_url=fake.url, grafana_token=fake.token)
    sink = GrafanaAnnotationSink()
    await sink.start(SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats()))
    return sink


def _run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


def test_a_late_correction_patches_the_region_and_keeps_the_error() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            sink = await _sink(fake)
            started = TaskStarted(event_id="started", time_ns=T0, task=_view(1))
            finished = _finished(5, 100)
            assert await sink.export([started, finished]) == SinkResult.SUCCESS
            [ann] = fake.annotations.values()
            assert "tokens in 100" in ann["text"] and "bad flange" in ann["text"]
            # Two late model calls in one batch: one PATCH, with the newest view.
            late = [
                Checkpoint(
                    event_id=f"late-{n}", time_ns=T0 + 43 * S, task=replace(finished.task, seq=5 + n, input_tokens=t)
                )
                for n, t in ((1, 300), (2, 700))
            ]
            patches = len(fake.calls("PATCH"))
            assert await sink.export(late) == SinkResult.SUCCESS
            assert len(fake.calls("PATCH")) == patches + 1
            [ann] = fake.annotations.values()
            assert "tokens in 700" in ann["text"] and "bad flange" in ann["text"]
            assert "status:error" in ann["tags"]
            await sink.shutdown(1)

    _run(main())


def test_an_older_final_view_never_replaces_a_newer_one() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            sink = await _sink(fake)
            newer, older = _finished(20, 900), replace(_finished(12, 300), event_id="finished-elsewhere")
            assert await sink.export([newer]) == SinkResult.SUCCESS
            calls = len(fake.calls("PATCH")) + len(fake.calls("POST"))
            assert await sink.export([older]) == SinkResult.SUCCESS
            assert len(fake.calls("PATCH")) + len(fake.calls("POST")) == calls
            [ann] = fake.annotations.values()
            assert "tokens in 900" in ann["text"]
            # A partial replica's TaskStarted, after the end, changes nothing either.
            assert (
                await sink.export([TaskStarted(event_id="started-b", time_ns=T0 + S, task=_view(3))])
                == SinkResult.SUCCESS
            )
            assert len(fake.calls("PATCH")) + len(fake.calls("POST")) == calls
            await sink.shutdown(1)

    _run(main())
