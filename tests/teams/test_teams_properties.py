"""Properties of the Teams sink over generated event streams: whatever the
events, their text, how they are batched and interleaved, and however
often the process restarts (the restarted one getting part of the stream
again, as a journal's replay or the exporter's retry gives it), each task
is one card at the root of its own thread showing its newest view, its
replies are the thread's lines once each and in order, and Teams accepts
every call."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.display.thread import ThreadPolicy
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_teams.render import parent
from tests.taskstreams import ENDS, interleaved, steps, tasks_events
from tests.teams.teams_support import CHANNEL, FAST, card_of, fast_fake, name_of, story, teams_env, thread_lines

WORDS = st.text(alphabet=st.sampled_from("ab <>&\"'é🙂\n*_[](){}"), max_size=40)
STEP = steps(WORDS)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.lists(STEP, max_size=6), min_size=1, max_size=3),
    data=st.data(),
)
def test_any_stream_and_restarts_give_one_card_per_task_and_its_lines_once_in_order(plan: Any, data: Any) -> None:
    ends = [data.draw(ENDS) for _ in plan]
    per_task = tasks_events(plan, ends, "it <broke> & **stopped**")
    stream = interleaved(per_task, data)  # sent in batches, cut below
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=4)))
    flush_at = data.draw(st.sets(st.sampled_from(cuts), max_size=2)) if cuts else set()
    # A restart at some cuts: the new process first gets the stream again from an earlier event.
    restarts = sorted(data.draw(st.sets(st.sampled_from(cuts), max_size=2))) if cuts else []
    replay_from = {r: data.draw(st.integers(0, r)) for r in restarts}

    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        fake.channel(CHANNEL)
        store = InMemoryStateStore()
        try:
            bounds = [0, *restarts, len(stream)]
            for first, last in itertools.pairwise(bounds):
                async with teams_env(fake=fake, store=store, **FAST) as env:
                    if first in replay_from:
                        await env.send(*stream[replay_from[first] : first])
                    start = first
                    for cut in [*(c for c in cuts if first < c < last), last]:
                        await env.send(*stream[start:cut])
                        if cut in flush_at:
                            assert await env.sink.force_flush(10)
                        start = cut
                    assert await env.sink.force_flush(20)
            refused = [c for c in fake.calls if c.status >= 300]
            assert not refused, refused[0].response
            roots = fake.roots(CHANNEL)
            assert len(roots) == len(per_task)
            policy = ThreadPolicy()
            for events in per_task:
                final = events[-1].task
                [root] = [r for r in roots if name_of(r) == final.task_name]
                assert card_of(root) == parent(final, final.ended_ns or final.updated_ns).card
                want = [f"{line.emoji} {line.summary}" for e in events for line in policy.lines(e)]
                assert story(thread_lines(fake, root), want) == want
        finally:
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
