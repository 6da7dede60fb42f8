"""Builders of domain events, a manual clock, and a sink wired to the fake
Slack server, shared by the Slack tests and the benchmark."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.fakes.slack_api import FakeSlack
from tests.taskscript import TaskScript

from spanvisor.config import Config
from spanvisor.events import (
    Checkpoint,
    Event,
)
from spanvisor.sink import Clock, SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_slack import SlackSink
from spanvisor_slack.settings import SETTINGS

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait for ``condition`` to hold, polling; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.01)


def returns_without_suspending(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` one step: it must finish without ever yielding to the loop,
    i.e. without waiting on I/O, a lock or a sleep."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended: it waited on something")


@dataclass
class Env:
    fake: FakeSlack
    sink: SlackSink
    store: InMemoryStateStore
    stats: PipelineStats
    config: Config

    async def send(self, *events: Event) -> None:
        await self.sink.export(list(events))


def slack_config(base_url: str, token: str = "xoxb-test", **overrides: Any) -> Config:
    values = {
        "slack_token": token,
        "slack_channel": "#agents",
        "slack_base_url": base_url,
        "slack_timeout_s": 5.0,
        **overrides,
    }
    parsers = {s.name: s.parse for s in SETTINGS}
    # Strings are parsed as if they came from the environment.
    values = {k: parsers[k](v) if isinstance(v, str) and k in parsers else v for k, v in values.items()}
    return Config.load(env={}, extra=SETTINGS, overrides=values)


@asynccontextmanager
async def slack_env(
    token: str = "xoxb-test",
    *,
    fake: FakeSlack | None = None,
    store: InMemoryStateStore | None = None,
    clock: Clock | None = None,
    flush_s: float = 10.0,
    channel_rate: float = 1.0,
    **overrides: Any,
) -> AsyncIterator[Env]:
    own_fake = fake is None
    fake = fake or FakeSlack(channel_rate=channel_rate, channel_burst=max(4, int(channel_rate)))
    if own_fake:
        await fake.start()
    store = store or InMemoryStateStore()
    stats = PipelineStats()
    config = slack_config(fake.base_url, token, **overrides)
    sink = SlackSink(clock=clock)
    await sink.start(SinkContext(config=config, state_store=store, stats=stats))
    try:
        yield Env(fake, sink, store, stats, config)
    finally:
        await sink.shutdown(flush_s)
        if own_fake:
            await fake.stop()


def tool(script: TaskScript, name: str, error: str | None = None) -> Checkpoint:
    """A tool call that ended (12 ms), failed with ``error`` when given, as the tracker says it."""
    eid, t = script._next()
    attrs: dict[str, Any] = {"tool": name, "duration_s": 0.012}
    if error:
        attrs["error"] = error
    return Checkpoint(event_id=eid, time_ns=t, task=script.view, source="tool_call", attributes=attrs)
