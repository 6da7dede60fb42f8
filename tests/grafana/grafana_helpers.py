"""Events, sink wiring and the fake server for the Grafana tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from tests.fakes.grafana_api import FakeGrafana

from spanvisor.config import Config
from spanvisor.events import Artifact, TaskFinished, TaskStarted, TaskView, stable_id
from spanvisor.sink import SinkContext
from spanvisor.statestores.api import StateStore
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_grafana import GrafanaAnnotationSink
from spanvisor_grafana.settings import SETTINGS

S = 1_000_000_000
T0 = 1_700_000_000 * S
T = TypeVar("T")


class FakeClock:
    """Virtual time for the Grafana client's retries (its ``Clock``): ``sleep``
    moves time on at once and records the wait, so a test runs the real
    backoff schedule and reads it back instead of waiting for it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is

    def advance(self, seconds: float) -> None:
        self.t += seconds


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
    clock: FakeClock | None = None,
    **overrides: Any,
) -> GrafanaAnnotationSink:
    """A started sink on ``fake``; its client retries on ``clock`` (a new
    :class:`FakeClock` by default, read it back as ``sink.client.clock``)."""
    sink = GrafanaAnnotationSink(clock=clock or FakeClock())
    ctx = SinkContext(
        config=config(fake, token, **overrides),
        state_store=store or InMemoryStateStore(),
        stats=stats or PipelineStats(),
    )
    await sink.start(ctx)
    return sink


def clock_of(sink: GrafanaAnnotationSink) -> FakeClock:
    assert sink.client is not None and isinstance(sink.client.clock, FakeClock)
    return sink.client.clock


def with_fake(test: Callable[[FakeGrafana], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with FakeGrafana(**kw) as fake:
            await test(fake)

    run(main())


def seeded_database(pg_server: Any, rows: Iterable[tuple[str, tuple[Any, ...]]]) -> str:
    """A new migrated database holding ``rows`` (statement, arguments); its URL."""
    url: str = pg_server.database()

    async def seed() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            for sql, args in rows:
                await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(seed())
    return url


def read_only(url: str, sql: str) -> list[Any]:
    """``sql``'s rows, run the way Grafana's reader should: read-only."""

    async def go() -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction(readonly=True):
                return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())
