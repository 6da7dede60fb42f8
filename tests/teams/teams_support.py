"""A Teams sink wired to the fake Bot Connector, for the Teams tests: what
a channel shows (cards, their lines, the story), a fake that goes away and
comes back on its address (:class:`AwayTeams`), another sender of the same
app (:func:`other_sender`), a manual clock moved on while the sink works
(:func:`drive`), and an agent's two tasks through the real SDK
(:func:`two_tasks`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.agent import task as agent_task
from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.sink import Clock, SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_teams import TeamsSink
from spanvisor_teams.settings import SETTINGS
from tests.fakes.teams_api import FakeTeams
from tests.taskscript import ManualClock

T = TypeVar("T")
CHANNEL = "19:agents@thread.tacv2"
# Limits scaled up on both sides so a test of many calls takes a second;
# the tests of the limits themselves keep Teams'.
FAST: dict[str, Any] = {"teams_thread_per_minute": 3000.0, "teams_update_interval_s": 0.05}
SCALE = 100.0


@dataclass
class Env:
    fake: FakeTeams
    sink: TeamsSink
    store: InMemoryStateStore
    stats: PipelineStats

    async def send(self, *events: Event) -> None:
        await self.sink.export(list(events))

    def roots(self, channel: str = CHANNEL) -> list[dict[str, Any]]:
        return self.fake.roots(channel)

    def replies(self, root: dict[str, Any], channel: str = CHANNEL) -> list[dict[str, Any]]:
        return self.fake.thread(channel, root["id"])[1:]

    def lines(self, root: dict[str, Any], channel: str = CHANNEL) -> list[str]:
        """Every line the replies under ``root`` show, in order."""
        return thread_lines(self.fake, root, channel)

    def by_name(self, channel: str = CHANNEL) -> dict[str, dict[str, Any]]:
        """The channel's task cards by the task's name (a card's second line)."""
        return {name_of(root): root for root in self.roots(channel)}


def sent_requests(fake: FakeTeams) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every request the sink sent that Teams took, with the activity it
    carries (a new thread's first one is inside the request)."""
    out = []
    for c in fake.calls:
        if c.status < 400 and c.method in ("POST", "PUT"):
            out.append((c.body, c.body["activity"] if c.path == "/v3/conversations" else c.body))
    return out


def story_once(env: Env, root: dict[str, Any], reached: list[str]) -> None:
    """The card shows the end, and every line of the story is there once, in order."""
    assert shown(root).startswith("✅ rivet · complete"), shown(root)
    lines = env.lines(root)
    assert [x for x in lines if x.endswith("reached")] == [f"📍 {p} reached" for p in reached], lines
    assert sum(x.startswith("✅ Complete") for x in lines) == 1, lines
    assert shown(env.replies(root)[-1]).startswith("✅ Complete")  # the summary last


def thread_lines(fake: FakeTeams, root: dict[str, Any], channel: str = CHANNEL) -> list[str]:
    return [line for reply in fake.thread(channel, root["id"])[1:] for line in shown(reply).split("\n")]


def name_of(root: dict[str, Any]) -> str:
    """A task card's task name (its second line); another sender's card, its first."""
    lines = shown(root).split("\n")
    return lines[1] if len(lines) > 1 else lines[0]


def story(lines: list[str], want: list[str]) -> list[str]:
    """The lines, in order, that are lines of the story ``want`` (each
    line's head: its emoji and summary). A reply may hold several (progress
    lines waiting together share one); a line posted twice shows twice here."""
    wanted = set(want)
    return [line for line in lines if line in wanted]


def card_of(activity: dict[str, Any]) -> dict[str, Any]:
    """The Adaptive Card an activity carries."""
    (attachment,) = activity["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    return card


def texts(node: Any) -> list[str]:
    """Every line a card shows, in order: a TextBlock's text, a
    RichTextBlock's runs joined (one line of mixed weights)."""
    out: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "TextBlock" and isinstance(node.get("text"), str):
            out.append(node["text"])
        elif node.get("type") == "RichTextBlock":
            out.append("".join(str(r.get("text", "")) for r in node.get("inlines", []) if isinstance(r, dict)))
        else:
            for v in node.values():
                out += texts(v)
    elif isinstance(node, list):
        for v in node:
            out += texts(v)
    return out


def shown(activity: dict[str, Any]) -> str:
    """What a person reads on an activity's card, a line per block."""
    return "\n".join(texts(card_of(activity)))


def teams_config(fake: FakeTeams, channel: str = CHANNEL, **overrides: Any) -> Config:
    values = {
        "teams_app_id": fake.app_id,
        "teams_app_password": fake.app_password,
        "teams_tenant": fake.tenant,
        "teams_channel": channel,
        "teams_service_url": fake.service_url,
        "teams_login_url": fake.base_url,
        "teams_openid_url": fake.openid_url,
        **overrides,
    }
    parsers = {s.name: s.parse for s in SETTINGS}
    values = {k: parsers[k](v) if isinstance(v, str) and k in parsers else v for k, v in values.items()}
    return Config.load(env={}, extra=SETTINGS, overrides=values)


def fast_fake(**kw: Any) -> FakeTeams:
    return FakeTeams(scale=SCALE, **kw)


F = TypeVar("F", bound=FakeTeams)


@asynccontextmanager
async def running(fake: F) -> AsyncIterator[F]:
    """``fake`` serving until the block ends."""
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


class AwayTeams(FakeTeams):
    """The fake that can go away and come back on the same address: refusing
    connections (:meth:`away`), or taking them and never answering
    (:meth:`silent`, a host that hangs), then answering again (:meth:`back`)
    with all it held (tokens, threads, limits)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._hole: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    async def away(self) -> None:
        await self.stop()

    async def silent(self) -> None:
        """Connections taken, requests read, nothing ever answered."""
        await self.stop()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)

        self._hole = await asyncio.start_server(hold, "127.0.0.1", self.port)

    async def back(self) -> None:
        if self._hole is not None:
            self._hole.close()
            for writer in self._held:
                writer.close()
            self._held.clear()
            await self._hole.wait_closed()
            self._hole = None
        assert self._runner is not None
        # The same application (the fake's state and handlers) on a new runner at the same port.
        self._runner = web.AppRunner(self._runner.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._hole is not None:
            self._hole.close()
            for writer in self._held:
                writer.close()
            self._held.clear()
            self._hole = None
        await super().stop()


async def other_sender(fake: FakeTeams, channel: str, threads: int) -> None:
    """Another process of the same app (with its own token) makes ``threads``
    threads in ``channel`` at once: it fills Teams' window for the channel."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": fake.app_id,
            "client_secret": fake.app_password,
            "scope": "https://api.botframework.com/.default",
        }
        async with http.post(fake.token_url, data=form) as resp:
            token = (await resp.json())["access_token"]
        for n in range(threads):
            card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": f"other {n}"}]}
            activity = {
                "type": "message",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
            }
            body = {"isGroup": True, "channelData": {"channel": {"id": channel}}, "activity": activity}
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{fake.service_url}v3/conversations", json=body, headers=headers) as resp:
                assert resp.status == 201, await resp.text()


async def until(check: Callable[[], Any], what: str, seconds: float = 30.0) -> None:
    """A failure bound, not a timing: waits in real time for ``check``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not check():
        if loop.time() >= end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def advance_until(
    clock: ManualClock, check: Callable[[], Any], what: str, step: float = 0.05, seconds: float = 30.0
) -> None:
    """Moves a manual clock on by ``step`` at a time until ``check`` holds
    (what was under way settled after each step); fails after ``seconds``
    of real time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not check():
        if loop.time() >= end:
            raise AssertionError(f"timed out waiting for {what}")
        clock.advance(step)
        for _ in range(4):
            await asyncio.sleep(0)
        await asyncio.sleep(0.002)


async def drive(clock: ManualClock, job: Awaitable[T], step: float = 0.25) -> T:
    """``job``'s result, the manual clock moved on by ``step`` each moment it
    waits. The clock moves only while this loop runs: a busy machine stalls
    the clock with the sink and the fake, so no call lands later in Teams'
    time than the pace it kept allows."""
    future = asyncio.ensure_future(job)
    while not future.done():
        for _ in range(4):  # what is ready (a call under way) goes on before the clock does
            await asyncio.sleep(0)
        if future.done():
            break
        clock.advance(step)
        await asyncio.sleep(0.002)
    return await future


@asynccontextmanager
async def teams_env(
    *,
    fake: FakeTeams | None = None,
    store: InMemoryStateStore | None = None,
    clock: Clock | None = None,
    channel: str = CHANNEL,
    flush_s: float = 10.0,
    **overrides: Any,
) -> AsyncIterator[Env]:
    own = fake is None
    fake = fake or fast_fake()
    if own:
        await fake.start()
    if channel not in fake.channels:
        fake.channel(channel)
    store = store or InMemoryStateStore()
    stats = PipelineStats()
    sink = TeamsSink(clock=clock)
    await sink.start(SinkContext(config=teams_config(fake, channel, **overrides), state_store=store, stats=stats))
    try:
        yield Env(fake, sink, store, stats)
    finally:
        await sink.shutdown(flush_s)
        if own:
            await fake.stop()


def two_tasks(provider: TracerProvider, scope: str = "teams") -> None:
    """An agent's two tasks through the real SDK: one that completes (steps,
    milestones, an artifact, text to show literally), one that fails."""
    tracer = provider.get_tracer(scope)
    with agent_task("Diagnose [F47](https://evil.example)", agent_id="rivet", tracer=tracer) as t:
        t.checkpoint("reading the alarm", progress=30.0, step="triage")
        t.checkpoint("routing", progress=60.0, step="route")
        t.artifact("report.md", uri="https://files.example/report.md")
        t.checkpoint("done", progress=100.0)
    with pytest.raises(RuntimeError), agent_task("Migrate <schema> & data", agent_id="sprocket", tracer=tracer) as t:
        t.checkpoint("dumping", progress=20.0)
        raise RuntimeError("connection <refused>")
