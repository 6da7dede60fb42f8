"""A real agent (the OpenTelemetry SDK, spanvisor's processor or exporter)
with the Teams sink beside an in-memory one: the channel tells the story
the events tell, a card per task showing its end and its thread's replies
line for line and in order, on each path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from spanvisor import SpanvisorSpanExporter, SpanvisorSpanProcessor
from spanvisor.display.thread import ThreadPolicy
from spanvisor.events import TaskFinished
from spanvisor.otel.live import channel
from spanvisor.testing import InMemorySink
from spanvisor_teams import TeamsSink
from tests.fakes.teams_api import FakeTeams
from tests.teams.teams_support import (
    CHANNEL,
    FAST,
    fast_fake,
    name_of,
    shown,
    story,
    teams_config,
    thread_lines,
    two_tasks,
)


def _story(fake: FakeTeams, memory: InMemorySink) -> None:
    """Each task: one card, its final state; its replies are the lines
    ThreadPolicy makes of the events the other sink got, in that order."""
    roots = fake.roots(CHANNEL)
    finished = [e for e in memory.events if isinstance(e, TaskFinished)]
    assert len(roots) == len(finished) == 2
    policy = ThreadPolicy()
    want: dict[str, list[str]] = {}
    for event in memory.events:
        for line in policy.lines(event):
            want.setdefault(event.task.task_name or "", []).append(f"{line.emoji} {line.summary}")
    assert sorted(name_of(root) for root in roots) == sorted(e.task.task_name or "" for e in finished)
    for root in roots:
        name = name_of(root)
        assert want[name] and story(thread_lines(fake, root), want[name]) == want[name], name
        end = next(e for e in finished if e.task.task_name == name)
        assert shown(root).startswith({"complete": "✅", "error": "❌"}[end.outcome]), shown(root)
    refused = [c for c in fake.calls if c.status >= 400]
    assert not refused, refused[0].response


def _run(make: Callable[[list[Any], Any], Any], wrap: Callable[[Any], Any]) -> None:
    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        fake.channel(CHANNEL)
        try:
            memory = InMemorySink()
            owner = make([TeamsSink(), memory], teams_config(fake, **FAST))
            provider = TracerProvider()
            provider.add_span_processor(wrap(owner))
            await asyncio.to_thread(two_tasks, provider)
            await asyncio.to_thread(provider.force_flush)
            await asyncio.to_thread(owner.pipeline.force_flush, 30)
            # The exporter's path says a root's facts live, on a thread of its own.
            live = channel(provider.get_tracer("teams-paths"))
            if live is not None:
                await asyncio.to_thread(live.close)
            await asyncio.to_thread(provider.shutdown)
            _story(fake, memory)
        finally:
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


def test_the_processors_path_tells_the_same_story_in_teams() -> None:
    _run(lambda sinks, config: SpanvisorSpanProcessor(sinks=sinks, config=config), lambda p: p)


def test_the_exporters_path_tells_the_same_story_in_teams() -> None:
    _run(lambda sinks, config: SpanvisorSpanExporter(sinks=sinks, config=config), BatchSpanProcessor)
