"""Slack's per-method limits kept before sending (``spanvisor_slack/pacing.py``, through ``spanvisor/chat/pacing.py``):
no bursts into 429s, edits of one message coalesced while they wait, thread
replies ahead of waiting edits, one retry at a time after a 429, and nothing
lost or posted twice. The real sink against the fake Slack's HTTP server; the
fake enforces its per-method buckets in real time, so the tests that count
429s run on the real clock (with the tier scaled up for time) and those that
need exact turns run on a manual clock with the fake unlimited."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_support import run, slack_env, tool, until
from tests.fakes.slack_api import FakeSlack
from tests.taskscript import ManualClock, TaskScript

from spanvisor.chat.pacing import BOARD, LOG, PERSON, ROUTINE, URGENT, Limit, Pacer
from spanvisor.events import ApprovalRequest

TOOL_NAME = re.compile(r"probe_\d+_\d+")


def _thread_text(env: Any, parent: Any) -> list[str]:
    return [json.dumps([m.text, m.blocks], ensure_ascii=False) for m in env.fake.thread(parent)]


def _edits_of(fake: FakeSlack, ts: str) -> list[Any]:
    return [c for c in fake.calls_to("chat.update") if c.args.get("ts") == ts]


def _one_edit_per_10_s(clock: ManualClock, **overrides: Any) -> AbstractAsyncContextManager[Any]:
    """A sink whose chat.update has one call in 10 s (burst 1), on a manual
    clock, with posts unlimited: which edit goes next is the question."""
    return slack_env(
        clock=clock,
        channel_rate=1000.0,
        slack_channel_interval_s=0.0,
        slack_rate_limits="chat.update=6/1",
        slack_milestones="",
        **overrides,
    )


def _drops(env: Any) -> list[Any]:
    return [k for k in env.stats.counters if k[0] == "dropped_total"]


@pytest.mark.slow
def test_paced_edits_never_draw_a_429_and_every_tool_call_shows_once() -> None:
    # Tier 3 scaled up for time (300 a minute, burst 5 at the fake); the sink
    # keeps the same tier with its own smaller burst, as it does for Slack's.
    async def main() -> None:
        fake = FakeSlack(
            method_limits={"chat.update": (300.0, 5), "chat.delete": (300.0, 5)}, channel_rate=200, channel_burst=200
        )
        await fake.start()
        try:
            async with slack_env(
                fake=fake,
                flush_s=60,
                slack_rate_limits="chat.update=300/3, chat.delete=300/3",
                slack_update_interval_s=0.2,
                slack_reply_interval_s=0.05,
                slack_channel_interval_s=0.0,
                slack_milestones="",
            ) as env:
                tasks = [TaskScript.new(f"paced-{k}", task_name=f"Paced {k}") for k in range(12)]
                await env.send(*(t.started() for t in tasks))
                await env.send(*(t.checkpoint("working") for t in tasks))
                for i in range(8):  # 8 tool calls a task: a work log shows them all by name
                    for k, t in enumerate(tasks):
                        await env.send(tool(t, f"probe_{k}_{i}"), t.checkpoint("working", message=f"round {i}"))
                    await asyncio.sleep(0.05)
                await env.send(*(t.finished("complete") for t in tasks))
                assert await env.sink.force_flush(60)
                assert not [c for c in fake.calls_to("chat.update") if c.status == 429], "an edit drew a 429"
                parents = fake.parents()
                assert len(parents) == 12
                for p in parents:
                    assert "complete" in p.blocks[0]["text"]["text"], p.blocks[0]
                    blocks = [json.dumps(m.blocks, ensure_ascii=False) for m in fake.thread(p)]
                    names = [n for text in blocks for n in TOOL_NAME.findall(text)]
                    k = int(names[0].split("_")[1]) if names else -1
                    # Every tool call of the task once in its thread's final state: none lost, none twice.
                    assert sorted(names) == sorted(f"probe_{k}_{i}" for i in range(8)), names
                assert not _drops(env)
        finally:
            await fake.stop()

    run(main())


def test_edits_waiting_for_the_budget_coalesce_into_one_call_with_the_latest_view() -> None:
    async def main() -> None:
        clock = ManualClock()
        async with slack_env(
            clock=clock,
            channel_rate=1000.0,
            slack_channel_interval_s=0.0,
            slack_rate_limits="chat.update=6/1",  # one edit every 10 s of the manual clock
            slack_milestones="",
        ) as env:
            a, b = TaskScript.new("co-a", task_name="A"), TaskScript.new("co-b", task_name="B")
            await env.send(a.started(), b.started())
            await until(lambda: len(env.fake.parents()) == 2, what="both parents")
            await env.send(a.checkpoint("waiting"))
            await until(lambda: len(env.fake.calls_to("chat.update")) == 1, what="A's status edit")
            for i in range(30):  # B changes while its edit waits for the budget
                await env.send(b.checkpoint("waiting", message=f"step {i}"))
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)
            assert len(env.fake.calls_to("chat.update")) == 1  # nothing sent past the budget
            clock.advance(10.0)
            pb = next(p for p in env.fake.parents() if p.ts != env.fake.calls_to("chat.update")[0].args["ts"])
            await until(lambda: _edits_of(env.fake, pb.ts), what="B's edit")
            await asyncio.sleep(0.2)
            (edit,) = _edits_of(env.fake, pb.ts)  # 30 changes, one call
            assert "step 29" in json.dumps(edit.args, ensure_ascii=False)
            assert not [c for c in env.fake.calls if c.status == 429]

    run(main())


def test_a_reply_goes_ahead_of_an_edit_waiting_for_the_budget_and_the_final_state_arrives() -> None:
    async def main() -> None:
        clock = ManualClock()
        async with _one_edit_per_10_s(clock) as env:
            s = TaskScript.new("prio", task_name="Prio")
            await env.send(s.started())
            await until(env.fake.parents, what="the parent")
            await env.send(s.checkpoint("working"))
            await until(lambda: len(env.fake.calls_to("chat.update")) == 1, what="the first edit")
            await env.send(s.checkpoint("waiting"))  # this edit waits 10 s for the budget
            await env.send(tool(s, "grep_logs"))
            (parent,) = env.fake.parents()
            await until(lambda: any("grep_logs" in x for x in _thread_text(env, parent)), what="the tool call")
            assert len(env.fake.calls_to("chat.update")) == 1  # posted as a reply while the edit waits
            await env.send(tool(s, "sed_config"))
            clock.advance(0.5)  # the task's reply interval
            await until(lambda: any("sed_config" in x for x in _thread_text(env, parent)), what="the next call")
            assert len(env.fake.calls_to("chat.update")) == 1
            await env.send(s.finished("complete"))
            for _ in range(40):
                clock.advance(1.0)
                await asyncio.sleep(0.02)
            assert await env.sink.force_flush(10)
            (parent,) = env.fake.parents()
            assert "complete" in parent.blocks[0]["text"]["text"]
            thread = _thread_text(env, parent)
            assert [i for i, x in enumerate(thread) if "grep_logs" in x] == [0]
            assert [i for i, x in enumerate(thread) if "sed_config" in x] == [1]
            assert "Complete" in thread[-1]
            # The waiting status edit and the final one coalesced: at most one more edit each.
            assert len(_edits_of(env.fake, parent.ts)) <= 3
            assert not _drops(env)

    run(main())


@pytest.mark.slow
def test_after_a_429_the_waiting_edits_retry_one_at_a_time() -> None:
    # The sink allows itself far more than the fake (as when another process
    # shares the token): the fake answers 429, and after each Retry-After one
    # waiting edit goes, not all of them.
    async def main() -> None:
        fake = FakeSlack(method_limits={"chat.update": (60.0, 1)}, channel_rate=200, channel_burst=200)
        await fake.start()
        try:
            async with slack_env(
                fake=fake,
                flush_s=60,
                slack_rate_limits="chat.update=6000/100",
                slack_update_interval_s=0.2,
                slack_channel_interval_s=0.0,
                slack_milestones="",
            ) as env:
                tasks = [TaskScript.new(f"storm-{k}", task_name=f"Storm {k}") for k in range(6)]
                await env.send(*(t.started() for t in tasks))
                await until(lambda: len(fake.parents()) == 6, what="the parents")
                await env.send(*(t.checkpoint("working") for t in tasks))
                await env.send(*(t.finished("complete") for t in tasks))
                assert await env.sink.force_flush(60)
                for p in fake.parents():
                    assert "complete" in p.blocks[0]["text"]["text"]
                edits = fake.calls_to("chat.update")
                refused = sum(1 for c in edits if c.status == 429)
                done = sum(1 for c in edits if c.status == 200)
                # The first burst (all six at once) and then about one 429 per
                # edit that got through, never one per waiting edit and second.
                assert refused <= len(tasks) + done, (refused, done)
                assert not _drops(env)
        finally:
            await fake.stop()

    run(main())


async def _drive(clock: ManualClock, jobs: list[asyncio.Task[Any]]) -> None:
    """Run ``jobs`` to the end, moving the manual clock to each next sleeper."""
    for _ in range(10_000):
        for _ in range(20):
            await asyncio.sleep(0)
        if all(j.done() for j in jobs):
            return
        heap = clock._heap  # the test's own clock: its next wake-up
        clock.advance(max(0.0, heap[0][0] - clock.t) if heap else 0.01)
    raise AssertionError("the calls never all got their turn")


@settings(max_examples=40, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.integers(0, 2), st.floats(0.0, 20.0)), min_size=1, max_size=25),
    burst=st.integers(1, 5),
    per_minute=st.sampled_from([6.0, 20.0, 50.0, 100.0]),
)
def test_the_pacer_never_grants_more_than_its_bucket_and_every_call_gets_a_turn(
    arrivals: list[tuple[int, float]], burst: int, per_minute: float
) -> None:
    async def main() -> list[float]:
        clock = ManualClock()
        pacer = Pacer(clock, {"chat.update": Limit(per_minute, burst)})
        granted: list[float] = []

        async def call(rank: int, at: float, i: int) -> None:
            await clock.sleep(at)
            took = await pacer.take("chat.update", key=f"m{i}", rank=rank, paused_until=lambda: 0.0)
            assert took == "go"
            granted.append(clock.now())

        jobs = [asyncio.create_task(call(r, at, i)) for i, (r, at) in enumerate(arrivals)]
        await _drive(clock, jobs)
        for j in jobs:
            j.result()
        return granted

    granted = sorted(asyncio.run(main()))
    assert len(granted) == len(arrivals)
    rate = per_minute / 60.0
    for i in range(len(granted)):
        for j in range(i, len(granted)):
            # Any window holds at most the burst plus what the rate refilled.
            assert j - i + 1 <= burst + (granted[j] - granted[i]) * rate + 1e-6


@settings(max_examples=30, deadline=None)
@given(ranks=st.lists(st.integers(BOARD, ROUTINE), min_size=2, max_size=12))
def test_calls_waiting_together_go_best_rank_first_then_oldest(ranks: list[int]) -> None:
    async def main() -> list[int]:
        clock = ManualClock()
        pacer = Pacer(clock, {"chat.update": Limit(60.0, 1)})
        assert await pacer.take("chat.update", paused_until=lambda: 0.0) == "go"  # the bucket is empty
        order: list[int] = []

        async def call(i: int) -> None:
            await pacer.take("chat.update", key=f"m{i}", rank=ranks[i], paused_until=lambda: 0.0)
            order.append(i)

        jobs = []
        for i in range(len(ranks)):
            jobs.append(asyncio.create_task(call(i)))
            await asyncio.sleep(0)
        await _drive(clock, jobs)
        return order

    order = asyncio.run(main())
    assert order == sorted(range(len(ranks)), key=lambda i: (ranks[i], i))


class _Calls:
    """Calls for one pacer's chat.update (60 a minute, burst 3) on a manual
    clock, and when each was granted."""

    def __init__(self, reserve: int = 0) -> None:
        self.clock = ManualClock()
        self.pacer = Pacer(self.clock, {"chat.update": Limit(60.0, 3)})
        self.pacer.reserve("chat.update", reserve)
        self.granted: dict[str, float] = {}

    def start(self, name: str, rank: int) -> asyncio.Task[None]:
        async def call() -> None:
            assert await self.pacer.take("chat.update", key=name, rank=rank, paused_until=lambda: 0.0) == "go"
            self.granted[name] = self.clock.now()

        return asyncio.create_task(call())


async def _settle() -> None:
    """Let every started call reach its wait."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_board_finds_the_call_kept_for_it_while_parents_wait() -> None:
    """With a call of the bucket kept for boards (issue 67, .board), the
    parents' edits leave the bucket's last call alone: a board that comes
    due takes it at once, ahead of them, and the parents still all go."""

    async def main() -> None:
        calls = _Calls(reserve=1)
        parents = [calls.start(f"p{i}", URGENT) for i in range(5)]
        await _settle()
        assert set(calls.granted) == {"p0", "p1"}  # a burst of 3, one kept
        board = calls.start("board", BOARD)
        await _settle()
        assert calls.granted.get("board") == calls.clock.now() == 0.0  # at once: no refill waited for
        await _drive(calls.clock, [*parents, board])
        assert len(calls.granted) == 6 and max(calls.granted.values()) > 0.0

    asyncio.run(main())


def test_progress_leaves_the_last_call_and_a_question_goes_first() -> None:
    """Work logs and routine edits never take a bucket's last call: a status
    change that comes after them goes at once; and a question for a person
    (or a failure) goes ahead of status changes already waiting (issue 67:
    an approval visible p95 <= 2 s when the workspace's edits are scarce)."""

    async def main() -> None:
        calls = _Calls()
        logs = [calls.start(f"log{i}", LOG) for i in range(4)]
        await _settle()
        assert set(calls.granted) == {"log0", "log1"}  # a burst of 3, one kept
        status = calls.start("status", URGENT)
        await _settle()
        assert calls.granted.get("status") == calls.clock.now() == 0.0  # the kept call: no refill waited for
        changes = [calls.start(f"change{i}", URGENT) for i in range(3)]
        await _settle()
        question = calls.start("question", PERSON)
        await _drive(calls.clock, [*logs, status, *changes, question])
        granted = calls.granted
        assert granted["question"] < min(granted[f"change{i}"] for i in range(3))
        assert max(granted[f"change{i}"] for i in range(3)) < min(granted["log2"], granted["log3"])

    asyncio.run(main())


def test_a_question_edits_its_parent_ahead_of_other_tasks_waiting_changes() -> None:
    """Five tasks' status changes wait for the workspace's edits (one in
    10 s here); a sixth task then asks a person: its parent, with the
    question and its buttons, is the next edit, and the five still follow.
    A waiting change that becomes a question steps out and comes back at a
    person's rank."""

    async def main() -> None:
        clock = ManualClock()
        async with _one_edit_per_10_s(clock, slack_update_interval_s=0.0) as env:
            tasks = [TaskScript.new(f"q{k}", task_name=f"Q{k}") for k in range(6)]
            await env.send(*(t.started() for t in tasks))
            await until(lambda: len(env.fake.parents()) == 6, what="the parents")
            await env.send(*(t.checkpoint("waiting") for t in tasks[:5]))
            await until(lambda: len(env.fake.calls_to("chat.update")) == 1, what="the first edit")
            for _ in range(20):
                await asyncio.sleep(0.01)  # the other four queue for the budget
            request = ApprovalRequest(approval_id="a-q5", question="Ship it?")
            await env.send(tasks[5].checkpoint("awaiting_approval", approvals=(request,)))
            for _ in range(20):
                await asyncio.sleep(0.01)
            clock.advance(10.0)
            await until(lambda: len(env.fake.calls_to("chat.update")) == 2, what="the second edit")
            second = env.fake.calls_to("chat.update")[1]
            # Asserted once the rest has drained: a sink left waiting on a
            # manual clock that no longer moves would never shut down.
            for _ in range(6):
                clock.advance(10.0)
                await asyncio.sleep(0.05)
            assert await env.sink.force_flush(10)
            assert "Ship it?" in json.dumps(second.args), "the question waited behind other tasks' changes"
            for p in env.fake.parents():
                assert "working" not in p.blocks[0]["text"]["text"], p.blocks[0]  # every change shown
            assert not _drops(env)

    run(main())


def test_a_flush_never_spins_on_a_question_whose_edit_waits_for_the_budget() -> None:
    """A flush (a shutdown, ``force_flush``) while a task that asks a person
    has a reply pending and its parent's edit waits for Slack's budget: the
    edit waits for its turn, the loop stays free. (Before, the edit stepped
    out for the reply, and the worker chose the edit again at once: a busy
    loop of state-store reads until the budget refilled, which on a clock
    that does not move never ends.) A watchdog thread moves the clock on if
    the loop stops answering, so a spin fails the test instead of hanging it."""

    async def main() -> None:
        clock = ManualClock()
        async with _one_edit_per_10_s(clock, slack_update_interval_s=0.0) as env:
            s = TaskScript.new("spin", task_name="Spin")
            await env.send(s.started())
            await until(env.fake.parents, what="the parent")
            await env.send(s.checkpoint("waiting"))
            await until(lambda: len(env.fake.calls_to("chat.update")) == 1, what="the budget's call")
            request = ApprovalRequest(approval_id="a-spin", question="Ship it?")
            await env.send(s.checkpoint("awaiting_approval", approvals=(request,)), tool(s, "grep_logs"))
            for _ in range(20):
                await asyncio.sleep(0.01)
            loop, stuck, done = asyncio.get_running_loop(), threading.Event(), threading.Event()

            def watchdog() -> None:
                while not done.is_set():
                    answered = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop)
                    try:
                        answered.result(10.0)  # a loaded machine stalls a loop for seconds; a spin, for ever
                    except TimeoutError:
                        stuck.set()
                        clock.t += 60.0  # the spinning loop reads the clock: the budget refills
                    done.wait(0.05)

            guard = threading.Thread(target=watchdog, daemon=True)
            guard.start()
            try:
                flushed = asyncio.ensure_future(env.sink.force_flush(30))
                for _ in range(50):
                    await asyncio.sleep(0.01)
                for _ in range(3):
                    clock.advance(10.0)
                    await asyncio.sleep(0.05)
                assert await flushed
            finally:
                done.set()
                guard.join(5)
            assert not stuck.is_set(), "the loop spun while the edit waited for its turn"
            (parent,) = env.fake.parents()
            assert "Ship it?" in json.dumps(parent.blocks)
            assert any("grep_logs" in x for x in _thread_text(env, parent))

    run(main())
