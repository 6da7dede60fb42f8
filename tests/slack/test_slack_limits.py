"""Coalescing, rate limits, retries and permanent errors."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from slack_support import returns_without_suspending, run, slack_env
from tests.fakes.slack_api import FakeSlack
from tests.taskscript import ManualClock, TaskScript

CHAT = ("chat.postMessage", "chat.update")


def _chat_calls(fake: FakeSlack) -> int:
    return sum(len(fake.calls_to(m)) for m in CHAT)


def test_10000_checkpoints_over_60_simulated_seconds_give_a_bounded_number_of_calls() -> None:
    async def main() -> None:
        clock = ManualClock()
        # The fake limits channels in real time; the sink's limiter runs on the manual clock.
        async with slack_env(clock=clock, channel_rate=1000.0) as env:  # default intervals
            task = TaskScript.new("busy", task_name="Crawl")
            await env.send(task.started())
            for i in range(10_000):
                await env.send(task.checkpoint(progress=i / 100, message=f"tool call {i}"))
                if i % 20 == 19:  # 0.12 simulated seconds
                    clock.advance(0.12)
                    await asyncio.sleep(0.002)
            await env.send(task.finished("complete"))
            for _ in range(50):
                clock.advance(1.0)
                await asyncio.sleep(0.005)
            assert await env.sink.force_flush(20)
            parent = env.fake.parents()[0]
            assert "complete" in parent.blocks[0]["text"]["text"]
            assert "tool call 9999" in str(parent.attachments)
            # 1 post + <= 60/5 + 1 timed edits + 1 status edit + 4 milestones + 1 summary
            calls = _chat_calls(env.fake)
            assert 10 <= calls <= 1 + 13 + 1 + 4 + 1, calls
            assert len(env.fake.thread(parent)) == 4  # 25, 50, 75 milestones + summary

    run(main())


@pytest.mark.slow
def test_a_storm_of_429s_never_blocks_export_and_the_final_state_arrives() -> None:
    # Slack's 30 s storm scaled 10x down: 3 s of 429s with Retry-After: 1.
    async def main() -> None:
        fake = FakeSlack(retry_after=1, channel_rate=50, channel_burst=50)
        await fake.start()
        try:
            async with slack_env(
                "xoxb-ratelimited-3s", fake=fake, slack_update_interval_s=0.5, slack_reply_interval_s=0.1
            ) as env:
                task = TaskScript.new("storm", task_name="Under fire")
                await env.send(task.started())
                start, i = time.monotonic(), 0
                while time.monotonic() - start < 3.5:
                    # export never waits on Slack, whatever Slack answers: it
                    # finishes without once yielding to the event loop. (How
                    # long it takes is measured in benchmarks/bench_slack.py,
                    # not asserted on a shared machine.)
                    batch = [task.checkpoint(progress=min(99.0, i / 5), message=f"step {i}")]
                    returns_without_suspending(env.sink.export(batch))
                    i += 1
                    await asyncio.sleep(0.005)  # the agent's pace
                await env.send(task.checkpoint(progress=100.0, message="last words"), task.finished("complete"))
                assert await env.sink.force_flush(20)
                parent = fake.parents()[0]
                assert "complete" in parent.blocks[0]["text"]["text"] and "last words" in str(parent.attachments)
                limited = [c for c in fake.calls if c.status == 429]
                assert limited, "the storm did not happen"
                # Paused per method: a few 429s per method and second, not one per checkpoint.
                assert len(limited) <= 12, len(limited)
                assert len(fake.parents()) == 1
        finally:
            await fake.stop()

    run(main())


@pytest.mark.parametrize(
    ("token", "channel", "error", "fix"),
    [
        ("xoxb-not-in-channel", "#agents", "not_in_channel", "/invite"),
        ("xoxb-test", "#missing", "channel_not_found", "SPANVISOR_SLACK_CHANNEL"),
        ("xoxb-test", "#archived", "is_archived", "archived"),
        ("xoxb-invalid", "#agents", "invalid_auth", "Bot User OAuth Token"),
        ("xoxb-revoked", "#agents", "token_revoked", "reinstall"),
        ("xoxb-error-invalid_blocks", "#agents", "invalid_blocks", "report it"),
    ],
)
def test_permanent_errors_are_not_retried_and_are_logged_once_with_the_fix(
    token: str, channel: str, error: str, fix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with slack_env(token, slack_channel=channel, slack_channel_interval_s=0.0) as env:
            for n in range(3):
                t = TaskScript.new(f"t{n}")
                await env.send(t.started(), t.checkpoint(progress=50.0), t.finished("complete"))
            assert await env.sink.force_flush(20)
            assert len(env.fake.calls) == 3  # one attempt per task, nothing else
            assert not env.fake.calls_to("chat.update")
            assert env.stats.value("dropped_total", reason=f"slack_{error}", sink="slack") >= 3
            assert env.stats.value("slack_errors_total", error=error, method="chat.postMessage") == 3

    with caplog.at_level(logging.INFO):
        run(main())
    logged = [r for r in caplog.records if f"slack_{error}".replace("_", " ") in r.getMessage()]
    assert len(logged) == 1 and fix in logged[0].getMessage()
    assert token not in caplog.text


@pytest.mark.slow
def test_5xx_and_connection_errors_are_retried_with_backoff() -> None:
    async def main() -> None:
        async with slack_env("xoxb-5xx-3") as env:
            t = TaskScript.new("flaky")
            await env.send(t.started(), t.finished("complete"))
            assert await env.sink.force_flush(15)
            assert [c.status for c in env.fake.calls][:4] == [503, 503, 503, 200]
            assert len(env.fake.parents()) == 1
        # Nothing listens here: connection refused, retried until the shutdown deadline.
        fake = FakeSlack()
        fake.base_url = "http://127.0.0.1:9/api/"
        async with slack_env(fake=fake, flush_s=1.0) as env:
            t = TaskScript.new("offline")
            await env.send(t.started())
            assert not await env.sink.force_flush(1.0)
        assert env.stats.value("dropped_total", reason="slack_undelivered", sink="slack") >= 1

    run(main())


def test_duplicate_events_are_ignored() -> None:
    async def main() -> None:
        async with slack_env(
            slack_update_interval_s=0.0, channel_rate=100.0, slack_channel_interval_s=0.0, slack_reply_interval_s=0.0
        ) as env:
            t = TaskScript.new("dup")
            events = [t.started(), t.checkpoint(progress=30.0), t.artifact("a.txt"), t.finished("complete")]
            await env.send(*events)
            await env.send(*events)
            assert await env.sink.force_flush(20)
            await env.send(*events)  # after the task is done
            assert await env.sink.force_flush(20)
            parent = env.fake.parents()[0]
            assert [m.text.split(":")[0] for m in env.fake.thread(parent)] == [
                "25% reached",
                "Artifact",
                "Complete in 0s · tokens in 0 / out 0 · 1 artifact",
            ]
            assert len(env.fake.parents()) == 1

    run(main())


@pytest.mark.slow
def test_chat_update_rate_limits_delay_edits_but_every_task_ends_in_its_final_state() -> None:
    # Tier 3 scaled up for time: 240 edits a minute per workspace, bursts of 2,
    # against 4 tasks that each change status four times.
    async def main() -> None:
        fake = FakeSlack(method_limits={"chat.update": (240.0, 2)}, channel_rate=50, channel_burst=50)
        await fake.start()
        try:
            async with slack_env(fake=fake, slack_update_interval_s=0.2, slack_milestones="") as env:
                tasks = [TaskScript.new(f"busy-{i}", task_name=f"Busy {i}") for i in range(4)]
                await env.send(*(t.started() for t in tasks))
                for status in ("working", "waiting", "working"):
                    await asyncio.sleep(0.3)
                    await env.send(*(t.checkpoint(status, message=f"now {status}") for t in tasks))
                await env.send(*(t.finished("complete") for t in tasks))
                assert await env.sink.force_flush(30)
                parents = fake.parents()
                assert len(parents) == 4
                for p in parents:
                    assert "complete" in p.blocks[0]["text"]["text"], p.blocks[0]
                limited = [c for c in fake.calls_to("chat.update") if c.status == 429]
                assert limited, "the limit was never reached"
                assert not [k for k in env.stats.counters if k[0] == "dropped_total"]
        finally:
            await fake.stop()

    run(main())
