"""One parent per task, whatever restarts, replicas or ambiguous errors happen."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from slack_support import run, slack_env, until
from tests.fakes.slack_api import FakeSlack, channel_id
from tests.taskscript import TaskScript

from spanvisor.events import Event
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_slack import SlackSink

FAST = {"slack_update_interval_s": 0.0, "slack_reply_interval_s": 0.0, "slack_channel_interval_s": 0.0}


def _heads(fake: FakeSlack) -> list[str]:
    parent = fake.parents()[0]
    return [m.text.split(" ")[0] for m in fake.thread(parent)]


def test_a_restart_mid_task_continues_the_same_thread() -> None:
    async def main() -> None:
        fake, store = FakeSlack(channel_rate=100, channel_burst=100), InMemoryStateStore()
        await fake.start()
        try:
            task = TaskScript.new("long", task_name="Long job")
            first: list[Event] = [
                task.started(),
                task.checkpoint(progress=30.0, message="a"),
                task.checkpoint(progress=40.0, message="b"),
            ]
            async with slack_env(fake=fake, store=store, **FAST) as env:
                await env.send(*first)
                assert await env.sink.force_flush(20)
            # A new process: the pipeline replays what it had not acknowledged, then goes on.
            async with slack_env(fake=fake, store=store, **FAST) as env:
                await env.send(*first[1:])
                await env.send(task.checkpoint(progress=60.0, message="c"), task.finished("complete"))
                assert await env.sink.force_flush(20)
            assert len(fake.parents()) == 1
            assert _heads(fake) == ["25%", "50%", "Complete"]
            parent = fake.parents()[0]
            assert "complete" in parent.blocks[0]["text"]["text"] and parent.edits >= 1
        finally:
            await fake.stop()

    run(main())


def test_two_replicas_fed_the_same_events_post_one_parent_and_each_reply_once() -> None:
    async def main() -> None:
        fake, store = FakeSlack(channel_rate=100, channel_burst=100), InMemoryStateStore()
        await fake.start()
        try:
            tasks = [TaskScript.new(f"r{i}", agent=f"agent-{i % 3}") for i in range(10)]
            events = []
            for t in tasks:
                events += [
                    t.started(),
                    t.checkpoint(progress=30.0, step="x"),
                    t.artifact("out.txt"),
                    t.checkpoint(progress=80.0),
                    t.finished("complete"),
                ]
            async with slack_env(fake=fake, store=store, **FAST) as a, slack_env(fake=fake, store=store, **FAST) as b:
                for i in range(0, len(events), 3):
                    await a.send(*events[i : i + 3])
                    await asyncio.sleep(0)  # interleave: A's workers start before B sees the batch
                    await b.send(*events[i : i + 3])
                assert await a.sink.force_flush(30) and await b.sink.force_flush(30)
            assert len(fake.parents()) == 10
            for p in fake.parents():
                assert [m.text.split(" ")[0] for m in fake.thread(p)] == ["25%", "Artifact:", "75%", "Complete"]
        finally:
            await fake.stop()

    run(main())


class _PutLost(InMemoryStateStore):
    """A store that, while ``lost``, never answers the put of a parent's
    ``{channel, ts}``: the process dies between Slack's answer and that put."""

    lost = True

    async def put_if_owner(self, namespace: str, key: str, value: Mapping[str, Any], owner: str) -> bool:
        if self.lost and namespace.endswith(".parent"):
            await asyncio.Event().wait()
        return await super().put_if_owner(namespace, key, value, owner)


def test_a_parent_posted_by_a_process_killed_before_storing_it_is_found_not_posted_again() -> None:
    async def main() -> None:
        fake, store = FakeSlack(channel_rate=100, channel_burst=100), _PutLost()
        await fake.start()
        try:
            task = TaskScript.new("killed", task_name="Killed mid-post")
            first: list[Event] = [task.started(), task.checkpoint(progress=30.0, message="a")]
            fast = {**FAST, "slack_lease_s": 0.5}
            async with slack_env(fake=fake, store=store, flush_s=0.5, **fast) as env:
                await env.send(*first)
                await until(lambda: len(fake.parents()) == 1, 10)
            # The next holder of the claim (its lease over): a restarted
            # process, or a replica, replaying the same events.
            store.lost = False
            await asyncio.sleep(0.6)
            async with slack_env(fake=fake, store=store, **fast) as env:
                await env.send(*first, task.finished("complete"))
                assert await env.sink.force_flush(20)
            assert len(fake.parents()) == 1
            assert len(fake.calls_to("conversations.history")) >= 1
            assert "complete" in fake.parents()[0].blocks[0]["text"]["text"]
        finally:
            await fake.stop()

    run(main())


async def _use_up_history(fake: FakeSlack) -> None:
    """Another process on the same token spends the workspace's conversations.history budget."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        url = f"{fake.base_url}conversations.history"
        headers = {"Authorization": "Bearer xoxb-test"}
        async with http.get(url, params={"channel": channel_id("agents")}, headers=headers) as resp:
            assert resp.status == 200


def test_a_search_for_a_killed_processs_parent_that_cannot_finish_is_retried_not_posted_again() -> None:
    # The search after a restart answers only "found" or "not there": rate
    # limited past its time (here Retry-After 2 s against 1 s to look), it
    # is tried again later, and the parent is never posted on a guess.
    async def main() -> None:
        fake = FakeSlack(channel_rate=100, channel_burst=100, method_limits={"conversations.history": (30.0, 1)})
        store = _PutLost()
        await fake.start()
        try:
            task = TaskScript.new("killed-429", task_name="Killed mid-post")
            first: list[Event] = [task.started(), task.checkpoint(progress=30.0, message="a")]
            # By ID: no channel lookup, the history's 429 is what the search meets.
            fast = {**FAST, "slack_lease_s": 0.5, "slack_timeout_s": 0.5, "slack_channel": channel_id("agents")}
            async with slack_env(fake=fake, store=store, flush_s=0.5, **fast) as env:
                await env.send(*first)
                await until(lambda: len(fake.parents()) == 1, 10)
            store.lost = False
            await _use_up_history(fake)
            await asyncio.sleep(0.6)
            async with slack_env(fake=fake, store=store, **fast) as env:
                await env.send(*first, task.finished("complete"))
                assert await env.sink.force_flush(30)
            assert len(fake.parents()) == 1
            assert len([c for c in fake.calls_to("chat.postMessage") if not c.args.get("thread_ts")]) == 1
            statuses = [c.status for c in fake.calls_to("conversations.history")]
            assert 429 in statuses and statuses[-1] == 200
            assert "complete" in fake.parents()[0].blocks[0]["text"]["text"]
        finally:
            await fake.stop()

    run(main())


def test_many_parents_of_a_killed_process_are_found_with_one_channel_lookup() -> None:
    # A restart searches for every parent the killed process may have posted
    # at once. The channel (configured by name) is looked up once for all:
    # conversations.list is Tier 2, and one lookup each ran most searches out
    # of time, and a search that ran out of time posted again.
    async def main() -> None:
        fake, store = FakeSlack(channel_rate=100, channel_burst=100), _PutLost()
        await fake.start()
        try:
            tasks = [TaskScript.new(f"killed-{i}", task_name=f"Killed {i}") for i in range(6)]
            fast = {**FAST, "slack_lease_s": 0.5}
            async with slack_env(fake=fake, store=store, flush_s=0.5, **fast) as env:
                await env.send(*(t.started() for t in tasks))
                await until(lambda: len(fake.parents()) == len(tasks), 10)
            store.lost = False
            await asyncio.sleep(0.6)
            async with slack_env(fake=fake, store=store, **fast) as env:
                await env.send(*(t.started() for t in tasks), *(t.finished("complete") for t in tasks))
                assert await env.sink.force_flush(30)
            assert len(fake.parents()) == len(tasks)
            assert len([c for c in fake.calls_to("chat.postMessage") if not c.args.get("thread_ts")]) == len(tasks)
            assert len(fake.calls_to("conversations.list")) == 2  # the channel is on the second page
            assert all("complete" in p.blocks[0]["text"]["text"] for p in fake.parents())
        finally:
            await fake.stop()

    run(main())


def test_fatal_error_after_the_post_finds_the_message_instead_of_posting_again() -> None:
    async def main() -> None:
        async with slack_env("xoxb-fatal-after-post", channel_rate=100.0, **FAST) as env:
            task = TaskScript.new("amb")
            await env.send(task.started(), task.checkpoint(progress=30.0), task.finished("complete"))
            assert await env.sink.force_flush(20)
            # Looked for by the channel's ID, which Slack's history wants.
            (history,) = env.fake.calls_to("conversations.history")
            assert history.response["ok"] and history.args["channel"] == channel_id("agents")
            parents = env.fake.parents()
            assert len(parents) == 1 and parents[0].edits >= 1
            # Replies answered fatal_error too: stored once by Slack, never resent.
            assert _heads(env.fake) == ["25%", "Complete"]
            assert len(env.fake.calls_to("chat.postMessage")) == 3
            assert env.stats.value("dropped_total", reason="slack_ambiguous_reply", sink="slack") == 2

    run(main())


def test_an_ambiguous_post_that_cannot_be_found_is_never_repeated(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with slack_env("xoxb-fatal-after-post-nohistory", **FAST) as env:
            task = TaskScript.new("amb2")
            await env.send(task.started(), task.checkpoint(progress=30.0), task.finished("complete"))
            assert await env.sink.force_flush(20)
            assert len(env.fake.calls_to("chat.postMessage")) == 1 and len(env.fake.parents()) == 1
            assert not env.fake.calls_to("chat.update")
            assert env.stats.value("dropped_total", reason="slack_ambiguous_post", sink="slack") >= 1
            # A restart does not post it either: the claim was made final.
            sink = SlackSink()
            await sink.start(env.sink.ctx)  # type: ignore[arg-type]
            await sink.export([task.finished("complete")])
            assert await sink.force_flush(20)
            await sink.shutdown(1)
            assert len(env.fake.calls_to("chat.postMessage")) == 1

    with caplog.at_level(logging.INFO):
        run(main())
    assert "channels:history" in caplog.text


@pytest.mark.slow
def test_timeouts_on_a_post_are_ambiguous_too() -> None:
    async def main() -> None:
        async with slack_env("xoxb-slow-1500", slack_timeout_s=0.5, **FAST) as env:
            task = TaskScript.new("slow")
            await env.send(task.started())
            await env.sink.force_flush(8)
            # The fake records a call once it has answered it (after our timeout).
            await until(lambda: env.fake.calls_to("chat.postMessage"), what="the slow post to be stored")
        assert len(env.fake.calls_to("chat.postMessage")) == 1  # never reposted after the timeout
        assert len(env.fake.parents()) == 1

    run(main())


def test_status_rules_post_a_pointer_to_the_thread_in_the_alert_channel() -> None:
    async def main() -> None:
        async with slack_env(
            slack_routes="agent:ops-*=#ops, status:error=#agent-alerts", channel_rate=100.0, **FAST
        ) as env:
            a, b = TaskScript.new("t-ops", agent="ops-bot"), TaskScript.new("t-def", agent="other")
            await env.send(a.started(), b.started(), a.finished("error", error_type="Boom"), b.finished("complete"))
            assert await env.sink.force_flush(20)
            assert len(env.fake.parents("#ops")) == 1 and len(env.fake.parents("#agents")) == 1
            alerts = env.fake.parents("#agent-alerts")
            assert len(alerts) == 1 and "|open thread>" in alerts[0].text
            assert env.fake.calls_to("chat.getPermalink", ok=True)

    run(main())


def test_dry_run_validates_and_logs_without_sending(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with slack_env(None, slack_dry_run=True, slack_token=None, **FAST) as env:  # type: ignore[arg-type]
            task = TaskScript.new("dry")
            await env.send(task.started(), task.checkpoint(progress=50.0), task.finished("complete"))
            assert await env.sink.force_flush(20)
            assert env.fake.calls == []
            sent = env.sink.client.sent  # type: ignore[attr-defined]
            # The parent (already showing the final state), the 50% milestone, the summary.
            assert [m for m, _ in sent] == ["chat.postMessage"] * 3
            assert sent[1][1]["thread_ts"] == sent[2][1]["thread_ts"]

    with caplog.at_level(logging.INFO):
        run(main())
    assert "dry-run chat.postMessage" in caplog.text and "50% reached" in caplog.text


@pytest.mark.parametrize(
    ("token", "channel", "ok", "detail"),
    [
        ("xoxb-test", "#agents", [True, True], "can post"),
        ("xoxb-not-in-channel", "#agents", [True, False], "/invite"),
        ("xoxb-test", "#archived", [True, False], "archived"),
        ("xoxb-invalid", "#agents", [False], "Bot User OAuth Token"),
    ],
)
def test_check_tests_the_token_and_each_channel(token: str, channel: str, ok: list[bool], detail: str) -> None:
    async def main() -> None:
        async with slack_env(token, slack_channel=channel) as env:
            rows = await SlackSink.check(env.config)
            assert [r[1] for r in rows] == ok and detail in rows[-1][2]
            assert not env.fake.scheduled  # the test message was deleted
            assert token not in str(rows)

    run(main())
