"""Events, sink wiring and the fake server for the Grafana tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.events import Artifact, TaskFinished, TaskStarted, TaskView, stable_id
from spanvisor.sink import SinkContext
from spanvisor.statestore import InMemoryStateStore, StateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.settings import SETTINGS

S = 1_000_000_000
T0 = 1_700_000_000 * S
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def view(task_id: str = "task-1", **kw: Any) -> TaskView:
    base = TaskView(
        task_id=task_id,
        trace_id=stable_id("trace", task_id)[:32],
        root_span_id=stable_id("span", task_id)[:16],
        agent_id="rivet",
        agent_name="Rivet",
        task_name="Diagnose F47",
        repo="acme/plant",
        status="working",
        started_ns=T0,
        updated_ns=T0,
    )
    return replace(base, **kw)


def started(task_id: str = "task-1", **kw: Any) -> TaskStarted:
    v = view(task_id, status="starting", **kw)
    return TaskStarted(event_id=stable_id("start", task_id), time_ns=v.started_ns, task=v)


def finished(task_id: str = "task-1", outcome: str = "complete", duration_s: float = 42.0, **kw: Any) -> TaskFinished:
    end = T0 + int(duration_s * S)
    v = view(
        task_id,
        status=outcome,
        ended_ns=end,
        updated_ns=end,
        input_tokens=12_000,
        output_tokens=3_400,
        artifacts=(Artifact("report.md", "s3://bucket/report.md"),),
        **kw,
    )
    extra: dict[str, Any] = {}
    if outcome == "error":
        extra = {"error_type": "ValueError", "error_message": "bad flange"}
    return TaskFinished(
        event_id=stable_id("end", task_id),
        time_ns=end,
        task=v,
        outcome=outcome,  # type: ignore[arg-type]
        duration_s=duration_s,
        **extra,
    )


def config(fake: FakeGrafana, token: str | None = None, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "grafana_url": fake.url,
        "grafana_token": token or fake.token,
        "grafana_retry_budget_s": 5.0,
        "grafana_timeout_s": 2.0,
    }
    values.update(overrides)
    return Config.load(env={}, extra=SETTINGS, overrides=values)


async def start_sink(
    fake: FakeGrafana,
    store: StateStore | None = None,
    stats: PipelineStats | None = None,
    token: str | None = None,
    fast_backoff: bool = True,
    **overrides: Any,
) -> GrafanaAnnotationSink:
    sink = GrafanaAnnotationSink()
    ctx = SinkContext(
        config=config(fake, token, **overrides),
        state_store=store or InMemoryStateStore(),
        stats=stats or PipelineStats(),
    )
    await sink.start(ctx)
    if fast_backoff and sink.client is not None:
        # Real backoff shape, shorter steps: keeps the suite fast.
        sink.client.backoff_base_s = 0.01
        sink.client.backoff_max_s = 0.05
    return sink


def with_fake(test: Callable[[FakeGrafana], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with FakeGrafana(**kw) as fake:
            await test(fake)

    run(main())
