"""`spanvisor demo` with Slack and Telegram configured at once (the fakes'
settings): the four agents in both channels, each task's story the same in
each, nothing refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram.telegram_support import GROUP, TOKEN

pytestmark = pytest.mark.slow
AGENTS = ("rivet", "sprocket", "gauge", "ledger")


def test_the_demo_shows_its_four_agents_in_slack_and_telegram_alike(tmp_path: Path) -> None:
    slack, telegram = FakeSlack(), FakeTelegram(chat_per_second=100.0, chat_burst=100, group_per_minute=6000)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(fn: Any) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

    slack_url = asyncio.run_coroutine_threadsafe(slack.start(), loop).result(10)
    telegram_url = asyncio.run_coroutine_threadsafe(telegram.start(), loop).result(10)
    on_loop(lambda: telegram.chat(GROUP, "supergroup"))
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "TELEGRAM_"))},
            "SPANVISOR_SINKS": "slack,telegram",
            "SPANVISOR_DATA_DIR": str(tmp_path),
            "SLACK_BOT_TOKEN": "xoxb-demo",
            "SPANVISOR_SLACK_CHANNEL": "#agents",
            "SPANVISOR_SLACK_BASE_URL": slack_url,
            "SPANVISOR_SLACK_UPDATE_INTERVAL": "200ms",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "SPANVISOR_TELEGRAM_CHAT": str(GROUP),
            "SPANVISOR_TELEGRAM_BASE_URL": telegram_url,
            # The fake group takes what the demo sends at once: Telegram's own pace is the benchmark's.
            "SPANVISOR_TELEGRAM_GROUP_PER_MINUTE": "6000",
            "SPANVISOR_TELEGRAM_CHAT_PER_MINUTE": "6000",
            "SPANVISOR_TELEGRAM_UPDATE_INTERVAL_S": "0.2",
        }
        demo = subprocess.run(
            [sys.executable, "-m", "spanvisor.cli", "demo", "--fast"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        messages = on_loop(lambda: [dict(m) for m in telegram.chats[GROUP].messages.values()])
        parents = [m for m in messages if "reply_to_message" not in m]
        slack_parents = on_loop(slack.parents)
        assert len(parents) == len(slack_parents) == 4, [p["text"][:40] for p in parents]
        for agent in AGENTS:
            mine = [p for p in parents if p["text"].split("\n")[0].split(" ")[1] == agent]
            assert len(mine) == 1, agent
            assert any(agent in (p.text or "") for p in slack_parents), agent

        def told(agent: str) -> str:
            parent = next(p for p in parents if p["text"].split("\n")[0].split(" ")[1] == agent)
            return "\n".join(
                m["text"] for m in messages if m.get("reply_to_message", {}).get("message_id") == parent["message_id"]
            )

        assert "70%" in told("gauge") and "85%" in told("gauge") and "at this rate" in told("gauge")
        assert "Approval needed" in told("rivet") and "downtime_avoided" in told("rivet")
        assert "of this task's budget used" in told("rivet")
        assert "orders_archive exists" in told("sprocket") and "hunter2" not in json.dumps(messages)
        refused = on_loop(lambda: [c for c in telegram.calls if c.status != 200])
        assert not refused, refused[0].response
    finally:
        asyncio.run_coroutine_threadsafe(slack.stop(), loop).result(10)
        asyncio.run_coroutine_threadsafe(telegram.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
