"""A Telegram sink wired to the fake Bot API, for the Telegram tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.agent import task as agent_task
from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.sink import Clock, SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_telegram import TelegramSink
from spanvisor_telegram.settings import SETTINGS
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "700000001:fake-secret"
GROUP, DM = -1001, 42
# Limits scaled up on both sides so a test of many calls takes a second;
# the tests of the limits themselves keep Telegram's.
FAST = {
    "telegram_chat_per_minute": 6000.0,
    "telegram_group_per_minute": 6000.0,
    "telegram_update_interval_s": 0.05,
}


@dataclass
class Env:
    fake: FakeTelegram
    sink: TelegramSink
    store: InMemoryStateStore
    stats: PipelineStats

    async def send(self, *events: Event) -> None:
        await self.sink.export(list(events))

    def parents(self, chat: int = GROUP) -> list[dict[str, Any]]:
        return [m for m in self.fake.chats[chat].messages.values() if "reply_to_message" not in m]

    def replies(self, parent: dict[str, Any], chat: int = GROUP) -> list[str]:
        return replies_to(self.fake, parent, chat)


def replies_to(fake: FakeTelegram, parent: dict[str, Any], chat: int = GROUP) -> list[str]:
    mid = parent["message_id"]
    return [
        m["text"] for m in fake.chats[chat].messages.values() if m.get("reply_to_message", {}).get("message_id") == mid
    ]


def story(replies: list[str], want: list[str]) -> list[str]:
    """The lines of the replies, in order, that are lines of the story
    ``want`` (each line's head: its emoji and summary). A reply may hold
    several (progress lines waiting together share one); a line posted
    twice shows twice here."""
    wanted = set(want)
    return [line for text in replies for line in text.split("\n") if line in wanted]


def telegram_config(base_url: str, chat: int = GROUP, token: str = TOKEN, **overrides: Any) -> Config:
    values = {"telegram_token": token, "telegram_chat": str(chat), "telegram_base_url": base_url, **overrides}
    parsers = {s.name: s.parse for s in SETTINGS}
    values = {k: parsers[k](v) if isinstance(v, str) and k in parsers else v for k, v in values.items()}
    return Config.load(env={}, extra=SETTINGS, overrides=values)


def fast_fake(**kw: Any) -> FakeTelegram:
    return FakeTelegram(chat_per_second=100.0, chat_burst=100, group_per_minute=6000, **kw)


@asynccontextmanager
async def telegram_env(
    *,
    fake: FakeTelegram | None = None,
    store: InMemoryStateStore | None = None,
    clock: Clock | None = None,
    chat: int = GROUP,
    token: str = TOKEN,
    flush_s: float = 10.0,
    **overrides: Any,
) -> AsyncIterator[Env]:
    own = fake is None
    fake = fake or fast_fake()
    if own:
        await fake.start()
    if chat not in fake.chats:
        fake.chat(chat, "supergroup" if chat < 0 else "private")
    store = store or InMemoryStateStore()
    stats = PipelineStats()
    sink = TelegramSink(clock=clock)
    await sink.start(
        SinkContext(config=telegram_config(fake.base_url, chat, token, **overrides), state_store=store, stats=stats)
    )
    try:
        yield Env(fake, sink, store, stats)
    finally:
        await sink.shutdown(flush_s)
        if own:
            await fake.stop()


def two_tasks(provider: TracerProvider, scope: str = "telegram") -> None:
    """An agent's two tasks through the real SDK: one that completes (steps,
    milestones, an artifact, text to escape), one that fails."""
    tracer = provider.get_tracer(scope)
    with agent_task("Diagnose <F47>", agent_id="rivet", tracer=tracer) as t:
        t.checkpoint("reading the alarm", progress=30.0, step="triage")
        t.checkpoint("routing", progress=60.0, step="route")
        t.artifact("report.md", uri="https://files.example/report.md")
        t.checkpoint("done", progress=100.0)
    with pytest.raises(RuntimeError), agent_task("Migrate schema", agent_id="sprocket", tracer=tracer) as t:
        t.checkpoint("dumping", progress=20.0)
        raise RuntimeError("connection <refused>")
