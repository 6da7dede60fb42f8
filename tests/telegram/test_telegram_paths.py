"""A real agent (the OpenTelemetry SDK, spanvisor's processor or exporter)
with the Telegram sink beside an in-memory one: the chat tells the story
the events tell, line for line and in order, on each path."""

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
from spanvisor_telegram import TelegramSink
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram.telegram_support import FAST, GROUP, fast_fake, replies_to, story, telegram_config, two_tasks


def _story(fake: FakeTelegram, memory: InMemorySink) -> None:
    """Each task: one message, its final state; its replies are the lines
    ThreadPolicy makes of the events the other sink got, in that order."""
    chat = fake.chats[GROUP]
    parents = [m for m in chat.messages.values() if "reply_to_message" not in m]
    finished = [e for e in memory.events if isinstance(e, TaskFinished)]
    assert len(parents) == len(finished) == 2
    policy = ThreadPolicy()
    want: dict[str, list[str]] = {}
    for event in memory.events:
        for line in policy.lines(event):
            want.setdefault(event.task.task_name or "", []).append(f"{line.emoji} {line.summary}")
    for parent in parents:
        name = parent["text"].split("\n")[1]
        assert story(replies_to(fake, parent), want[name]) == want[name], name
        end = next(e for e in finished if e.task.task_name == name)
        assert parent["text"].startswith({"complete": "✅", "error": "❌"}[end.outcome])


def _run(make: Callable[[list[Any], Any], Any], wrap: Callable[[Any], Any]) -> None:
    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        fake.chat(GROUP, "supergroup")
        try:
            memory = InMemorySink()
            owner = make([TelegramSink(), memory], telegram_config(fake.base_url, **FAST))
            provider = TracerProvider()
            provider.add_span_processor(wrap(owner))
            await asyncio.to_thread(two_tasks, provider)
            await asyncio.to_thread(provider.force_flush)
            await asyncio.to_thread(owner.pipeline.force_flush, 30)
            # The exporter's path says a root's facts live, on a thread of its own.
            live = channel(provider.get_tracer("telegram-paths"))
            if live is not None:
                await asyncio.to_thread(live.close)
            await asyncio.to_thread(provider.shutdown)
            _story(fake, memory)
        finally:
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), 90))


def test_the_processors_path_tells_the_same_story_in_telegram() -> None:
    _run(lambda sinks, config: SpanvisorSpanProcessor(sinks=sinks, config=config), lambda p: p)


def test_the_exporters_path_tells_the_same_story_in_telegram() -> None:
    _run(lambda sinks, config: SpanvisorSpanExporter(sinks=sinks, config=config), BatchSpanProcessor)
