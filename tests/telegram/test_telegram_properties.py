"""Properties of the Telegram sink over generated event streams: whatever
the events, their text and how they are batched, each task is one message
showing its newest view, its replies are the thread's lines once each in
order, and Telegram accepts every call (no tag left open, no text too long)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.display.thread import ThreadPolicy
from spanvisor_telegram.render import parent
from tests.taskstreams import ENDS, interleaved, steps, tasks_events
from tests.telegram.telegram_support import FAST, story, telegram_env

WORDS = st.text(alphabet=st.sampled_from("ab <>&\"'é🙂\n"), max_size=40)
STEP = steps(WORDS)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.lists(STEP, max_size=6), min_size=1, max_size=3),
    data=st.data(),
)
def test_any_stream_gives_one_message_per_task_and_its_lines_once_in_order(plan: Any, data: Any) -> None:
    ends = [data.draw(ENDS) for _ in plan]
    per_task = tasks_events(plan, ends, "it <broke> & stopped")
    stream = interleaved(per_task, data)  # sent in batches, cut below
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=4)))
    flush_at = data.draw(st.sets(st.sampled_from(cuts), max_size=2)) if cuts else set()

    async def main() -> None:
        async with telegram_env(**FAST) as env:
            start = 0
            for cut in [*cuts, len(stream)]:
                await env.send(*stream[start:cut])
                if cut in flush_at:
                    assert await env.sink.force_flush(10)
                start = cut
            assert await env.sink.force_flush(20)
            refused = [c for c in env.fake.calls if c.status != 200]
            assert not refused, refused[0].response
            parents = env.parents()
            assert len(parents) == len(per_task)
            policy = ThreadPolicy()
            for events in per_task:
                final = events[-1].task
                shown = next(p for p in parents if p["text"].split("\n")[1] == final.task_name)
                mine = [c for c in env.fake.calls if c.status == 200 and c.method in ("sendMessage", "editMessageText")]
                last = [c for c in mine if c.response["result"]["message_id"] == shown["message_id"]][-1]
                assert last.args["text"] == parent(final, final.ended_ns or final.updated_ns).text
                want = [f"{line.emoji} {line.summary}" for e in events for line in policy.lines(e)]
                assert story(env.replies(shown), want) == want

    asyncio.run(asyncio.wait_for(main(), 60))
