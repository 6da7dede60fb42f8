"""Tool calls in a task's thread: every one (merged when they queue up), only
the failed ones, or none (``SPANVISOR_SLACK_TOOLS``)."""

from __future__ import annotations

import json

import pytest
from slack_support import run, slack_env, tool
from tests.taskscript import TaskScript

FAST = {
    "slack_update_interval_s": 0.2,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
    "channel_rate": 100.0,
}


@pytest.mark.parametrize(
    ("mode", "want"),
    [
        ("all", ["lookup (12 ms)", "fetch <sales> (12 ms): timeout", "route (12 ms)"]),
        ("failed", ["fetch <sales> (12 ms): timeout"]),
        ("none", []),
    ],
)
def test_tool_lines_follow_the_setting(mode: str, want: list[str]) -> None:
    async def main() -> None:
        async with slack_env(slack_tool_lines=mode, **FAST) as env:
            s = TaskScript.new("task-tools", "triage", task_name="Diagnose F47")
            await env.send(s.started())
            await env.send(tool(s, "lookup"), tool(s, "fetch <sales>", "timeout"), tool(s, "route"))
            await env.send(s.finished("complete"))
            assert await env.sink.force_flush(20)
            (parent,) = env.fake.parents("#agents")
            shown = json.dumps([m.blocks for m in env.fake.thread(parent)], ensure_ascii=False)
            for detail in want:
                assert detail.replace("<", "&lt;").replace(">", "&gt;") in shown
            assert shown.count("*Tool") == len(want)
            assert "fetch <sales>" not in shown  # agent text is escaped

    run(main())
