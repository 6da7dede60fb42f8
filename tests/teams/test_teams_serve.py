"""`spanvisor serve` (a real subprocess) with the Teams sink, fed over OTLP
by an agent with the SDK's exporter: the channel tells the story the
in-process path tells, line for line; and a press POSTed to serve's admin
port at ``/teams/messages`` releases an agent waiting for approval, under
the public host name serve is told of (SPANVISOR_ALLOWED_HOSTS) and never
under another."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import ClientSession, ClientTimeout
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from spanvisor import SpanvisorSpanProcessor
from spanvisor.agent import ApprovalDecision
from spanvisor.agent import task as agent_task
from spanvisor.display.thread import ThreadPolicy
from spanvisor.testing import InMemorySink
from tests.fakes.teams_api import FakeTeams
from tests.teams.teams_support import CHANNEL, SCALE, card_of, shown
from tests.waiting import wait_until

sys.path.insert(0, str(Path(__file__).parents[1] / "receiver"))
from serve_proc import ServeProcess, console_env

pytestmark = pytest.mark.slow
T = TypeVar("T")
ALICE = "8a0d7a4f-0c4e-4a5e-9a3c-2b1f0e6d5c4b"
PUBLIC_HOST = "bot.example.com"  # the proxy's name for serve, as the bot's Azure registration would give it


class FakeTeamsThread:
    """The fake Bot Connector on a loop of its own: serve is another process."""

    def __init__(self) -> None:
        self.fake = FakeTeams(scale=SCALE)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.base_url = self.wait(self.fake.start())
        self.on_loop(lambda: self.fake.channel(CHANNEL))

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return self.wait(call())

    def threads(self) -> list[list[dict[str, Any]]]:
        """Each thread of the channel, its root first, as it is now (copies)."""
        return list(self.on_loop(lambda: [[dict(a) for a in t] for t in self.fake.channels[CHANNEL].threads.values()]))

    def close(self) -> None:
        self.wait(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def teams_env(data: Path, fake: FakeTeamsThread, **extra: str) -> dict[str, str]:
    f = fake.fake
    env = console_env(
        data,
        SPANVISOR_TEAMS_APP_ID=f.app_id,
        SPANVISOR_TEAMS_APP_PASSWORD=f.app_password,
        SPANVISOR_TEAMS_TENANT=f.tenant,
        SPANVISOR_TEAMS_CHANNEL=CHANNEL,
        SPANVISOR_TEAMS_SERVICE_URL=f.service_url,
        SPANVISOR_TEAMS_LOGIN_URL=f.base_url,
        SPANVISOR_TEAMS_OPENID_URL=f.openid_url,
        SPANVISOR_TEAMS_THREAD_PER_MINUTE="3000",
        SPANVISOR_TEAMS_UPDATE_INTERVAL_S="0.05",
        **extra,
    )
    env["SPANVISOR_SINKS"] = "teams"
    return env


def two_tasks(provider: TracerProvider) -> None:
    """An agent's two tasks through the real SDK: one that completes (steps,
    milestones, an artifact, text to escape), one that fails."""
    tracer = provider.get_tracer("teams")
    with agent_task("Diagnose <F47>", agent_id="rivet", tracer=tracer) as t:
        t.checkpoint("reading the alarm", progress=30.0, step="triage")
        t.checkpoint("routing", progress=60.0, step="route")
        t.artifact("report.md", uri="https://files.example/report.md")
        t.checkpoint("done", progress=100.0)
    with pytest.raises(RuntimeError), agent_task("Migrate schema", agent_id="sprocket", tracer=tracer) as t:
        t.checkpoint("dumping", progress=20.0)
        raise RuntimeError("connection <refused>")


def _figureless(texts: list[str]) -> list[str]:
    """Lines without their figures (durations differ between runs)."""
    return [re.sub(r"\d+(\.\d+)?", "N", t) for t in texts]


def test_serve_tells_the_same_story_in_teams_as_the_agents_own_process(
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

    fake = FakeTeamsThread()
    serve = ServeProcess(tmp_path / "data", teams_env(tmp_path / "data", fake))
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "agents"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=serve.url)))
        two_tasks(provider)
        provider.shutdown()

        def told() -> bool:
            threads = fake.threads()
            ended = [t for t in threads if shown(t[0]).startswith(("✅", "❌"))]
            if len(ended) < 2:
                return False
            for thread in threads:
                name = shown(thread[0]).split("\n")[1]
                wanted = _figureless(want[name])
                lines = _figureless([line for reply in thread[1:] for line in shown(reply).split("\n")])
                if [line for line in lines if line in set(wanted)] != wanted:
                    return False
            return True

        wait_until(told, 60, "the channel to tell both tasks' stories")
        assert len(fake.threads()) == 2
        assert serve.terminate(60) == 0
    finally:
        serve.stop()
        fake.close()


def test_a_press_posted_to_serves_admin_port_releases_the_waiting_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANVISOR_LIVE_CHANNEL", "off")
    deciders = tmp_path / "deciders.toml"
    deciders.write_text(f'[people.alice]\nteams_user = "{ALICE}"\n')
    fake = FakeTeamsThread()
    env = teams_env(tmp_path / "data", fake, SPANVISOR_DECIDERS=str(deciders), SPANVISOR_ALLOWED_HOSTS=PUBLIC_HOST)
    serve = ServeProcess(tmp_path / "data", env)
    result: list[ApprovalDecision] = []
    try:
        monkeypatch.setenv("SPANVISOR_CONTROL_URL", f"http://127.0.0.1:{serve.http}")
        provider = TracerProvider(resource=Resource.create({"service.name": "agents"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=serve.url, timeout=20)))

        def agent() -> None:
            with agent_task("Deploy web", agent_id="rivet", tracer=provider.get_tracer("agent")) as t:
                result.append(t.request_approval("Deploy to prod?", timeout=120))

        worker = threading.Thread(target=agent, daemon=True)
        worker.start()

        def card() -> tuple[str, dict[str, Any]] | None:
            for thread in fake.threads():
                found = _approve(thread[0])
                if found is not None:
                    return thread[0]["id"], found
            return None

        root_id, approve = wait_until(card, 60, "the card's Approve button")
        endpoint = f"http://127.0.0.1:{serve.admin}/teams/messages"
        f = fake.fake

        async def press(host: str) -> int:
            activity = f.invoke(CHANNEL, root_id, root_id, approve["verb"], approve["data"], user="29:a", aad=ALICE)
            headers = {"Authorization": f"Bearer {f.sign(f.claims())}", "Host": host}
            async with ClientSession(timeout=ClientTimeout(total=30)) as http:
                async with http.post(endpoint, json=activity, headers=headers) as resp:
                    return resp.status

        # A name serve is not told of is refused (a DNS rebinding guard) before the press is read.
        assert fake.wait(press("evil.example")) == 403
        assert not result
        # The proxy's name, in SPANVISOR_ALLOWED_HOSTS: the press is taken and the agent released.
        assert fake.wait(press(PUBLIC_HOST)) == 200
        wait_until(lambda: result, 60, "the agent to be released")
        assert result[0].approved and result[0].by == "alice", result
        worker.join(30)
        provider.shutdown()
        assert serve.terminate(60) == 0
    finally:
        serve.stop()
        fake.close()


def _approve(root: dict[str, Any]) -> dict[str, Any] | None:
    """The Approve button (an Action.Execute) of a card, or None."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute" and node.get("verb") == "spanvisor.approve":
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(card_of(root))
    return found[0] if found else None
