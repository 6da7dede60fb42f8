"""`spanvisor demo` with Slack, Telegram and Teams configured at once (the
fakes' settings): the four agents in all three channels, each task's story
the same in each, nothing refused.

One demo run for the three channels (one slow test, not one a channel): the
sinks get the same events, so what a channel shows differently is the
channel's rendering or delivery, not a different run."""

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
from tests.fakes.teams_api import FakeTeams
from tests.fakes.telegram_api import FakeTelegram
from tests.teams.teams_support import CHANNEL, SCALE, shown
from tests.telegram.telegram_support import GROUP, TOKEN

pytestmark = pytest.mark.slow
AGENTS = ("rivet", "sprocket", "gauge", "ledger")
# How the demo's tasks end, whatever the channel.
ENDS = {"rivet": "complete", "sprocket": "error", "gauge": "complete", "ledger": "complete"}
SECRET = "hunter2"  # in sprocket's log lines, redacted before any sink sees them


def _agent(head: str) -> str:
    """The agent a task's message is about, from its first line ("✅ rivet · complete")."""
    return head.partition("\n")[0].split(" ")[1]


def _lines(texts: list[str]) -> list[str]:
    """A thread's replies as one list of lines: how lines are grouped into
    replies depends on what waited together, the lines and their order do not."""
    return [line for text in texts for line in text.split("\n")]


def test_the_demo_shows_its_four_agents_in_slack_telegram_and_teams_alike(tmp_path: Path) -> None:
    slack, telegram = FakeSlack(), FakeTelegram(chat_per_second=100.0, chat_burst=100, group_per_minute=6000)
    # Teams' limits scaled up in the fake and in the sink alike: the demo's
    # burst is not throttled here; Teams' own pace is benchmarks/bench_teams.py's.
    teams = FakeTeams(scale=SCALE)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(fn: Any) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

    slack_url = asyncio.run_coroutine_threadsafe(slack.start(), loop).result(10)
    telegram_url = asyncio.run_coroutine_threadsafe(telegram.start(), loop).result(10)
    asyncio.run_coroutine_threadsafe(teams.start(), loop).result(10)
    on_loop(lambda: telegram.chat(GROUP, "supergroup"))
    on_loop(lambda: teams.channel(CHANNEL))
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "TELEGRAM_"))},
            "SPANVISOR_SINKS": "slack,telegram,teams",
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
            "SPANVISOR_TEAMS_APP_ID": teams.app_id,
            "SPANVISOR_TEAMS_APP_PASSWORD": teams.app_password,
            "SPANVISOR_TEAMS_TENANT": teams.tenant,
            "SPANVISOR_TEAMS_CHANNEL": CHANNEL,
            "SPANVISOR_TEAMS_SERVICE_URL": teams.service_url,
            "SPANVISOR_TEAMS_LOGIN_URL": teams.base_url,
            "SPANVISOR_TEAMS_OPENID_URL": teams.openid_url,
            "SPANVISOR_TEAMS_THREAD_PER_MINUTE": str(30 * SCALE),
            "SPANVISOR_TEAMS_UPDATE_INTERVAL_S": "0.2",
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

        # Telegram: a message per task, its story in the replies to it.
        messages = on_loop(lambda: [dict(m) for m in telegram.chats[GROUP].messages.values()])
        parents = [m for m in messages if "reply_to_message" not in m]
        assert sorted(_agent(p["text"]) for p in parents) == sorted(AGENTS), [p["text"][:40] for p in parents]
        in_telegram = {
            _agent(p["text"]): (
                p["text"].split("\n")[0],
                _lines(
                    [m["text"] for m in messages if m.get("reply_to_message", {}).get("message_id") == p["message_id"]]
                ),
            )
            for p in parents
        }

        # Teams: a thread per task, its card at the root, its story the replies.
        threads = on_loop(lambda: [[dict(a) for a in teams.thread(CHANNEL, r["id"])] for r in teams.roots(CHANNEL)])
        assert sorted(_agent(shown(t[0])) for t in threads) == sorted(AGENTS), [shown(t[0])[:40] for t in threads]
        in_teams = {
            _agent(shown(t[0])): (shown(t[0]).split("\n")[0], _lines([shown(a) for a in t[1:]])) for t in threads
        }

        # Slack: a parent per task naming its agent.
        slack_parents = on_loop(slack.parents)
        assert len(slack_parents) == 4, [(p.text or "")[:40] for p in slack_parents]
        for agent in AGENTS:
            assert sum(agent in (p.text or "") for p in slack_parents) == 1, agent

        for agent in AGENTS:
            status, story = in_telegram[agent]
            assert status.endswith(f"{agent} · {ENDS[agent]}"), status
            assert in_teams[agent][0] == status, (agent, in_teams[agent][0], status)
            assert in_teams[agent][1] == story, (agent, in_teams[agent][1], story)

        def told(agent: str) -> str:
            return "\n".join(in_telegram[agent][1])

        assert "70%" in told("gauge") and "85%" in told("gauge") and "at this rate" in told("gauge")
        assert "Approval needed" in told("rivet") and "downtime_avoided" in told("rivet")
        assert "of this task's budget used" in told("rivet")
        assert "orders_archive exists" in told("sprocket")
        slack_said = on_loop(
            lambda: [(m.text, m.blocks, m.attachments) for c in slack.messages.values() for m in c.values()]
        )
        assert SECRET not in json.dumps([messages, threads, slack_said])

        refused = on_loop(lambda: [c for c in telegram.calls if c.status != 200])
        assert not refused, refused[0].response
        refused_teams = on_loop(
            lambda: [(c.method, c.path, c.status, c.response) for c in teams.calls if c.status >= 400]
        )
        assert not refused_teams, refused_teams[0]
    finally:
        asyncio.run_coroutine_threadsafe(slack.stop(), loop).result(10)
        asyncio.run_coroutine_threadsafe(telegram.stop(), loop).result(10)
        asyncio.run_coroutine_threadsafe(teams.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
