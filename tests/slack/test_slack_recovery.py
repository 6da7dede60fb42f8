"""After an ambiguous post the sink finds its parent the way Slack allows:
by the channel's conversation ID, through every page of history."""

from __future__ import annotations

import logging

import pytest
from slack_support import run, slack_env
from tests.fakes.slack_api import channel_id
from tests.taskscript import TaskScript

FAST = {
    "slack_update_interval_s": 0.0,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
    "channel_rate": 100.0,
}
AGENTS = channel_id("agents")


def test_a_parent_pushed_past_the_first_page_by_a_busy_channel_is_found() -> None:
    async def main() -> None:
        # 250 messages from others follow the parent at once; the channel is
        # configured by name, so its ID is looked up first (250 filler channels).
        async with slack_env("xoxb-fatal-after-post-busy", **FAST) as env:
            task = TaskScript.new("busy", task_name="Crowded")
            await env.send(task.started(), task.checkpoint(progress=30.0), task.finished("complete"))
            assert await env.sink.force_flush(20)

            lists = env.fake.calls_to("conversations.list", ok=True)
            assert len(lists) == 2 and lists[1].args.get("cursor")  # paged to find #agents
            history = env.fake.calls_to("conversations.history", ok=True)
            assert {c.args["channel"] for c in history} == {AGENTS}
            assert len(history) == 2 and history[1].args.get("cursor")  # found on page 2
            (parent,) = env.fake.parents()
            assert len(env.fake.calls_to("chat.postMessage")) == 3  # the parent once, two replies
            assert parent.edits >= 1 and "complete" in parent.blocks[0]["text"]["text"]
            # The claim holds the ID the other methods need.
            assert await env.store.get("slack.parent", "busy") == {"channel": AGENTS, "ts": parent.ts}
            assert not [k for k in env.stats.counters if k[0] == "dropped_total" and "post" in str(k)]

    run(main())


def test_a_channel_configured_by_id_needs_no_lookup() -> None:
    async def main() -> None:
        async with slack_env("xoxb-fatal-after-post-nolist", slack_channel=AGENTS, **FAST) as env:
            task = TaskScript.new("by-id")
            await env.send(task.started(), task.finished("complete"))
            assert await env.sink.force_flush(20)
            assert not env.fake.calls_to("conversations.list")
            (parent,) = env.fake.parents()
            assert parent.edits >= 1
            assert await env.store.get("slack.parent", "by-id") == {"channel": AGENTS, "ts": parent.ts}

    run(main())


def test_a_name_that_cannot_be_resolved_ends_the_task_once_with_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with slack_env("xoxb-fatal-after-post-nolist", **FAST) as env:
            task = TaskScript.new("no-list")
            await env.send(task.started(), task.checkpoint(progress=30.0), task.finished("complete"))
            assert await env.sink.force_flush(20)
            assert len(env.fake.calls_to("chat.postMessage")) == 1  # never posted again
            assert not env.fake.calls_to("conversations.history")  # never asked with a name
            assert env.stats.value("dropped_total", reason="slack_ambiguous_post", sink="slack") >= 1
            assert await env.store.get("slack.parent", "no-list") == {"channel": "#agents", "ts": None}

    with caplog.at_level(logging.INFO):
        run(main())
    assert "channels:read" in caplog.text and "by ID" in caplog.text


def test_every_post_teaches_the_sink_its_channel_id() -> None:
    async def main() -> None:
        async with slack_env(**FAST) as env:
            task = TaskScript.new("learn")
            await env.send(task.started())
            assert await env.sink.force_flush(20)
            assert env.sink.transport.channels.known("#agents") == AGENTS
            assert env.sink.transport.channels.known("agents") == AGENTS
            assert env.sink.transport.channels.known("#ops") is None

    run(main())
