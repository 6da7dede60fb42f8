"""A task's tool calls and step changes gathered into one thread reply, its
work log, edited in place (``spanvisor_slack/worklog.py``).

At Slack's real limit (the strict fake: about one post per second per
channel), a task with 500 tool calls and four milestones used to queue 50
merged tool replies ahead of its milestones, summary and the next tasks.
Now its thread is the work log, the milestones and the summary: every
milestone and the summary reach Slack, in order, the log counts all 500
calls, and nothing waits long."""

from __future__ import annotations

import json
import time
from typing import Any

from slack_support import run, slack_env, tool
from tests.taskscript import TaskScript

from spanvisor.events import Checkpoint


def _texts(env: Any, parent: Any) -> list[str]:
    return [json.dumps([m.text, m.blocks], ensure_ascii=False) for m in env.fake.thread(parent)]


def test_five_hundred_tool_calls_are_one_work_log_beside_the_milestones() -> None:
    async def main() -> None:
        async with slack_env(flush_s=60) as env:  # the fake's default: 1 post/s per channel
            s = TaskScript.new("task-toolheavy", "gauge", task_name="Summarise logs")
            await env.send(s.started())
            t0 = time.monotonic()
            for i in range(500):
                events: list[Checkpoint] = [tool(s, f"read_shard_{i % 3}")]
                if i % 125 == 124:
                    events.append(s.checkpoint(progress=(i + 1) / 5, message=f"shard {i + 1}"))
                await env.send(*events)
            await env.send(s.finished("complete"))
            assert await env.sink.force_flush(60)
            took = time.monotonic() - t0
            (parent,) = env.fake.parents("#agents")
            thread = _texts(env, parent)
            logs = [t for t in thread if "Work log" in t]
            assert len(logs) == 1 and "500 tool calls" in logs[0], thread
            milestones = [t for t in thread if "reached" in t]
            assert len(milestones) == 4, thread  # 25, 50, 75 and 100 %
            assert [thread.index(m) for m in milestones] == sorted(thread.index(m) for m in milestones)
            assert "25% reached" in milestones[0] and "100% reached" in milestones[-1]
            assert "Complete" in thread[-1]
            posts = env.fake.calls_to("chat.postMessage", ok=True)
            assert len(posts) <= 8, [c.args.get("text") for c in posts]  # parent, log, 4 milestones, summary
            assert not [c for c in env.fake.calls if c.response.get("ok") is False], "Slack refused a call"
            assert took < 30, took  # 50 merged replies alone took 50 s at one post a second

    run(main())


def test_failed_tool_calls_only_still_gather() -> None:
    """``SPANVISOR_SLACK_TOOL_LINES=failed``: only failures reach the log."""

    async def main() -> None:
        async with slack_env(slack_tool_lines="failed", slack_update_interval_s=0.2, channel_rate=100.0) as env:
            s = TaskScript.new("task-toolfail", task_name="Diagnose")
            await env.send(s.started())
            await env.send(*(tool(s, "fetch", "timeout" if i % 2 else None) for i in range(20)))
            await env.send(s.finished("complete"))
            assert await env.sink.force_flush(20)
            (parent,) = env.fake.parents("#agents")
            logs = [t for t in _texts(env, parent) if "fetch" in t]
            assert len(logs) == 1 and logs[0].count("Tool failed*") == 10, logs

    run(main())
