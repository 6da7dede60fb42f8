"""A new task's parent goes ahead of older tasks' thread replies in its channel.

The fake Slack limits posts per channel as Slack documents (about one per
second, short bursts; here scaled up 20x, the sink's pacing with it). Many
finished tasks' replies are queued, then new tasks start: each new task's
parent is posted before the old replies have drained, with at most a
couple of replies slipping in between (those that had their turn already),
every task's replies in order, nothing posted twice. The channel's board is
off here: with it, a backlog this long folds the progress replies instead
(tests/slack/test_busy_channel.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from slack_support import run, slack_env, until
from tests.taskscript import TaskScript

OLD, NEW = 40, 5
RATE = 20.0  # posts per second per channel, in the fake and in the sink


def _texts(fake: object, parent: object) -> list[str]:
    return [str(m.text) for m in fake.thread(parent)]  # type: ignore[attr-defined]


def test_new_parents_go_ahead_of_a_reply_backlog() -> None:
    async def main() -> None:
        async with slack_env(
            channel_rate=RATE,
            slack_channel_interval_s=1 / RATE,
            slack_reply_interval_s=0.0,
            slack_update_interval_s=0.2,
            slack_board_backlog="off",
            flush_s=60,
        ) as env:
            fake = env.fake
            old = [TaskScript.new(f"old-{i}", task_name=f"Old {i}") for i in range(OLD)]
            for t in old:
                await env.send(t.started())
            for t in old:
                await env.send(
                    t.checkpoint(progress=30.0, message="a quarter"),
                    t.checkpoint(progress=60.0, message="half"),
                    t.checkpoint(progress=90.0, message="three quarters"),
                    t.finished("complete"),
                )
            await until(lambda: len(fake.parents()) == OLD, 60, "the old tasks' parents")

            def replies() -> list[object]:
                return [c for c in fake.calls_to("chat.postMessage", ok=True) if c.args.get("thread_ts")]

            await until(lambda: len(replies()) >= 5, 60, "the reply backlog to start draining")
            mark = len(fake.calls)
            new = [TaskScript.new(f"new-{i}", task_name=f"New {i}") for i in range(NEW)]
            for t in new:
                await env.send(t.started())
            await until(lambda: len(fake.parents()) == OLD + NEW, 60, "the new tasks' parents")
            assert await env.sink.force_flush(60)

            after = fake.calls[mark:]
            posts = [c for c in after if c.method == "chat.postMessage" and c.response.get("ok")]
            last_new = max(i for i, c in enumerate(posts) if not c.args.get("thread_ts"))
            slipped = sum(1 for c in posts[:last_new] if c.args.get("thread_ts"))
            # Only posts that had their turn when the new tasks came go first.
            assert slipped <= 3, f"{slipped} old replies went before the last new parent"
            assert any(c.args.get("thread_ts") for c in posts[last_new:]), "the backlog had drained: no test"

            # Every old task: its four replies, once each, in order.
            by_name = {str(p.text): p for p in fake.parents()}
            assert len(by_name) == OLD + NEW
            for p in fake.parents():
                texts = _texts(fake, p)
                assert len(texts) == len(set(texts)), texts
                if "Old" in str(p.text) or "old-" in str(p.blocks):
                    assert len(texts) == 4, texts
                    order = [next(i for i, s in enumerate(texts) if w in s) for w in ("25", "50", "75")]
                    assert order == sorted(order), texts
            counts = Counter(str(c.args.get("thread_ts")) for c in fake.calls_to("chat.postMessage", ok=True))
            assert counts["None"] == OLD + NEW  # one parent per task
            await asyncio.sleep(0)

    run(main(), timeout=180)
