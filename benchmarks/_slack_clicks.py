"""The Slack side of bench_decisions: the fake Slack (Web API, response URLs,
Socket Mode) on a loop of its own, and the Approve click sent the two ways
Slack sends it.

The click is built from the button the sink actually rendered on the task's
parent message (its ``action_id`` and ``value``), then either POSTed, signed,
to ``/slack/interactions`` on an admin port, or delivered as an
``interactive`` envelope over the fake's Socket Mode WebSocket to slack_sdk's
``SocketModeClient`` run by the sink.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import SimpleNamespace
from typing import Any, TypeVar

from aiohttp import web
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_sender import SignedSender

from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.admin import make_app
from spanvisor_slack.actions import APPROVE

T = TypeVar("T")

SECRET = "bench-signing-secret-8f742231b10e"
APP_TOKEN = "xapp-1-A0SPANV-1-bench"
CLICKER = "U0ALICE"  # the one approver: the sink checks who clicks, as configured in production


def slack_env(fake_base_url: str) -> dict[str, str]:
    """The Slack sink's environment, shared by the in-process pipeline and serve:
    both ways in at once (HTTP request URL and Socket Mode), one approver,
    channel pacing relaxed so that waiting for each round's parent post
    does not dominate the run (it is outside the timed part anyway)."""
    return {
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SPANVISOR_SLACK_CHANNEL": "#agents",
        "SPANVISOR_SLACK_BASE_URL": fake_base_url,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SPANVISOR_SLACK_APPROVERS": CLICKER,
        "SPANVISOR_SLACK_CHANNEL_INTERVAL": "0.01",
        "SPANVISOR_SLACK_CHANNEL_BURST": "1000",
    }


class LoopThread:
    """An asyncio loop on a daemon thread; the benchmark's main thread runs
    the agents and hands coroutines over with :meth:`run`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-slack", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """``fn`` on the loop: the fake's dicts are only read where they are written."""

        async def on_loop() -> T:
            return fn()

        return self.run(on_loop(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _approve_buttons(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("action_id") == APPROVE and isinstance(node.get("value"), str):
            yield node
        for v in node.values():
            yield from _approve_buttons(v)
    elif isinstance(node, list):
        for v in node:
            yield from _approve_buttons(v)


class FakeSlackSide:
    """The fake Slack and the clicks on it. One payload is built per round,
    when the Approve button shows (:meth:`button_shown`), so the timed
    :meth:`click_http`/:meth:`click_socket` only send."""

    def __init__(self, lt: LoopThread) -> None:
        self.lt = lt
        # Rate limits loose enough for a parent per round; the sink still paces itself.
        self.fake = FakeSlack(channel_rate=1000.0, channel_burst=1000)
        self.base_url = lt.run(self.fake.start())
        self._payloads: dict[str, dict[str, Any]] = {}
        self._runners: list[web.AppRunner] = []

    def env(self) -> dict[str, str]:
        return slack_env(self.base_url)

    def button_shown(self, task_id: str) -> bool:
        if task_id not in self._payloads:
            payload = self.lt.call(lambda: self._click_payload(task_id))
            if payload is None:
                return False
            self._payloads[task_id] = payload
        return True

    def _click_payload(self, task_id: str) -> dict[str, Any] | None:
        for m in reversed(self.fake.parents()):
            if (m.metadata or {}).get("event_payload", {}).get("task_id") != task_id:
                continue
            for button in _approve_buttons(m.blocks):
                return self.fake.interactions.block_actions(
                    channel_id=m.channel,
                    message_ts=m.ts,
                    action_id=button["action_id"],
                    value=button["value"],
                    user_id=CLICKER,
                    user_name="alice",
                )
        return None

    def click_http(self, admin_base: str) -> Callable[[str], None]:
        sender = SignedSender(admin_base, SECRET)

        def click(task_id: str) -> None:
            sent = self.lt.run(sender.interaction(self._payloads.pop(task_id)))
            if sent.status != 200:
                raise RuntimeError(f"/slack/interactions answered {sent.status}: {sent.text}")

        return click

    def routed(self, admin_base: str) -> int:
        """The status of an unsigned POST to ``/slack/interactions``: 401 when
        the sink's route is served there (it refuses it), 404 when it is not."""
        sender = SignedSender(admin_base, SECRET)
        return self.lt.run(sender.interaction({"type": "block_actions"}, signed=False)).status

    def click_socket(self, task_id: str) -> None:
        self.lt.run(self.fake.socket.send("interactive", self._payloads.pop(task_id)))

    def wait_socket(self, timeout: float = 30.0) -> None:
        """Until the sink's SocketModeClient holds a connection."""

        async def connected() -> None:
            end = self.lt.loop.time() + timeout
            while self.fake.socket.connections < 1:
                if self.lt.loop.time() > end:
                    raise RuntimeError("the Socket Mode client never connected to the fake")
                await asyncio.sleep(0.01)

        self.lt.run(connected(), timeout + 5)

    def serve_admin(self, pipeline: Pipeline) -> str:
        """The sink's admin routes (``/slack/interactions``) served in this
        process by serve's own admin app, as tests/slack/interact_support does."""

        async def start() -> str:
            app = make_app(SimpleNamespace(pipeline=pipeline), lambda: (True, "ok"))  # type: ignore[arg-type]
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"

        return self.lt.run(start())

    def stop_admin(self) -> None:
        for runner in self._runners:
            self.lt.run(runner.cleanup())
        self._runners.clear()

    def close(self) -> None:
        self.stop_admin()
        self.lt.run(self.fake.stop())
