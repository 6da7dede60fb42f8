"""`spanvisor serve` (a real subprocess) with the Telegram sink, fed over
OTLP by an agent with the SDK's exporter: the chat tells the story the
in-process path tells, line for line, and presses the poller reads there."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from spanvisor import SpanvisorSpanProcessor
from spanvisor.display.thread import ThreadPolicy
from spanvisor.testing import InMemorySink
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram.telegram_support import GROUP, TOKEN, story, two_tasks
from tests.waiting import wait_until

sys.path.insert(0, str(Path(__file__).parents[1] / "receiver"))
from serve_proc import ServeProcess, console_env

pytestmark = pytest.mark.slow


class FakeTelegramThread:
    """The fake Bot API on a loop of its own: serve is another process."""

    def __init__(self) -> None:
        self.fake = FakeTelegram(chat_per_second=100.0, chat_burst=100, group_per_minute=6000)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.base_url = asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        self.on_loop(lambda: self.fake.chat(GROUP, "supergroup"))

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def messages(self) -> list[dict[str, Any]]:
        return list(self.on_loop(lambda: [dict(m) for m in self.fake.chats[GROUP].messages.values()]))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _figureless(texts: list[str]) -> list[str]:
    """Lines without their figures (durations differ between runs)."""
    return [re.sub(r"\d+(\.\d+)?", "N", t) for t in texts]


def test_serve_tells_the_same_story_in_telegram_as_the_agents_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The story comes from the spans; the live channel (a logger provider of its own) is not this test's.
    monkeypatch.setenv("SPANVISOR_LIVE_CHANNEL", "off")
    # The story as the agent's own process tells it (its sinks' events, through ThreadPolicy).
    memory = InMemorySink()
    here = TracerProvider()
    here.add_span_processor(SpanvisorSpanProcessor(sinks=[memory]))
    two_tasks(here)
    here.shutdown()
    policy, want = ThreadPolicy(), {}
    for event in memory.events:
        for line in policy.lines(event):
            want.setdefault(event.task.task_name or "", []).append(f"{line.emoji} {line.summary}")

    fake = FakeTelegramThread()
    env = console_env(
        tmp_path / "data",
        TELEGRAM_BOT_TOKEN=TOKEN,
        SPANVISOR_TELEGRAM_CHAT=str(GROUP),
        SPANVISOR_TELEGRAM_BASE_URL=fake.base_url,
        SPANVISOR_TELEGRAM_CHAT_PER_MINUTE="6000",
        SPANVISOR_TELEGRAM_GROUP_PER_MINUTE="6000",
        SPANVISOR_TELEGRAM_UPDATE_INTERVAL_S="0.05",
    )
    env["SPANVISOR_SINKS"] = "telegram"
    serve = ServeProcess(tmp_path / "data", env)
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "agents"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=serve.url)))
        two_tasks(provider)
        provider.shutdown()

        def told() -> bool:
            msgs = fake.messages()
            parents = [m for m in msgs if "reply_to_message" not in m]
            ended = [p for p in parents if p["text"].startswith(("✅", "❌"))]
            if len(ended) < 2:
                return False
            for p in parents:
                name = p["text"].split("\n")[1]
                got = [m["text"] for m in msgs if m.get("reply_to_message", {}).get("message_id") == p["message_id"]]
                lines = _figureless([line for text in got for line in text.split("\n")])
                if story(lines, _figureless(want[name])) != _figureless(want[name]):
                    return False
            return True

        wait_until(told, 60, "the chat to tell both tasks' stories")
        assert len([m for m in fake.messages() if "reply_to_message" not in m]) == 2
        assert serve.terminate(60) == 0
    finally:
        serve.stop()
        fake.close()
