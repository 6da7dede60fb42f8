"""A busy channel stays readable (issue 67, ``spanvisor_slack/board.py``).

Against the fake Slack at Slack's real limits (about one post a second per
channel, burst 4; ``chat.update`` at Tier 3, 50 a minute), with the sink at
its own defaults but for the bound (``SPANVISOR_SLACK_BOARD_BACKLOG``, small
here so that a few tasks fill it): when more posts wait for a channel than
the bound, tool calls and other progress fold into each task's own message
and one board message of the channel instead of queueing as replies, every
line still accounted for; approvals, errors and final states go ahead of
progress; the board is one message, edited in place, across a restart and
between two replicas; and whatever order and replays the events come in,
the board and every parent end on each task's final state. Every wait is
for a condition, never for a time; Slack's limits are kept on a clock ten
times faster than real time, by the fake and the sink alike, but in the
first test, which counts 429s.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from slack_support import Env, run, slack_config, slack_env, tool, until
from tests.fakes.slack_api import FakeSlack, Message
from tests.taskscript import ScaledClock, TaskScript

from spanvisor import SpanvisorSpanProcessor
from spanvisor.agent import task as agent_task
from spanvisor.events import ApprovalRequest, Checkpoint, Event
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.testing import InMemorySink
from spanvisor_slack import SlackSink
from spanvisor_slack.blocks import Look
from spanvisor_slack.blocks import problems as blocks_problems
from spanvisor_slack.board_rows import Row, board_payload

BOUND = 3  # posts waiting for the channel past which it folds


SPEED = 10.0  # the sink and the fake on one clock this much faster than real time


def real_slack(speed: float = SPEED) -> tuple[FakeSlack, ScaledClock]:
    """Slack's real limits: 1 post/s per channel (burst 4), chat.update 50 a
    minute, kept by the fake and the sink on one clock ``speed`` times faster
    than real time (what folds, and in which order, is the same; a delay on
    the machine is ``speed`` times longer on that clock, so a test that
    counts 429s runs at 1)."""
    clock = ScaledClock(speed)
    return FakeSlack.tier3(channel_rate=1.0, channel_burst=4, now=clock.now), clock


def text_of(m: Message) -> str:
    return json.dumps([m.text, m.blocks, m.attachments], ensure_ascii=False)


def board_lines(fake: FakeSlack) -> list[str]:
    """The board's rows, one a line (the only board of the channel)."""
    (board,) = fake.boards("#agents")
    lines: list[str] = []
    for b in board.blocks:
        if b.get("type") == "section":
            lines.extend(str(b["text"]["text"]).splitlines()[1:])
    return lines


def row_for(fake: FakeSlack, name: str) -> str | None:
    return next((line for line in board_lines(fake) if f"*{name}*" in line or f"|{name}>" in line), None)


def asked(s: TaskScript, question: str) -> Checkpoint:
    req = ApprovalRequest(approval_id=f"a-{s.view.task_id}", question=question)
    return s.checkpoint("awaiting_approval", approvals=(req,))


def test_a_backlog_folds_into_the_board_and_each_tasks_message() -> None:
    """Six tasks each calling tools in one channel: once more than the bound
    wait, tool calls stop queueing as replies; each task's message counts
    them, the one board lists every task, and every tool call is accounted
    for in the state store (posted or folded: none lost, none posted later).
    In real time: the sink's pacing draws no 429 from Slack."""

    async def main() -> None:
        fake, clock = real_slack(speed=1.0)
        await fake.start()
        try:
            async with slack_env(fake=fake, clock=clock, slack_board_backlog=str(BOUND), flush_s=120) as env:
                tasks = [TaskScript.new(f"busy-{i}", f"agent-{i}", task_name=f"Busy {i}") for i in range(6)]
                calls: dict[str, list[str]] = {t.view.task_id: [] for t in tasks}
                for t in tasks:
                    await env.send(t.started())
                for r in range(4):
                    for i, t in enumerate(tasks):
                        cp = tool(t, f"grep_{i}_{r}")
                        calls[t.view.task_id].append(cp.event_id)
                        await env.send(cp)
                await until(lambda: len(fake.boards("#agents")) == 1, 60, "the channel's board")
                await until(lambda: env.stats.value("slack_folded_lines_total") > 0, 60, "tool calls folded")
                for t in tasks:
                    await env.send(t.finished("complete"))
                assert await env.sink.force_flush(120)
                assert await env.sink.force_flush(120)  # the board's last edit after the workers'
                # One board, edited in place; every task on it as it ended.
                assert len(fake.boards("#agents")) == 1
                for t in tasks:
                    row = row_for(fake, str(t.view.task_name))
                    assert row is not None and row.endswith("· complete"), (t.view.task_name, board_lines(fake))
                # Every tool call settled once: posted (alone or in a work log) or folded.
                folded = 0
                for task_id, ids in calls.items():
                    for eid in ids:
                        value = await env.store.get("slack.reply", f"{task_id}/tool:{eid}")
                        assert value is not None, (task_id, eid)
                        folded += bool(value.get("folded"))
                assert folded == env.stats.value("slack_folded_lines_total") > 0
                # The tasks' own messages count what folded there.
                counted = [p for p in fake.parents("#agents") if "🗒️" in text_of(p) and "tool call" in text_of(p)]
                assert counted, "no task's message says what folded"
                assert len(fake.parents("#agents")) == 6
                assert not [c for c in fake.calls if c.status == 429], "the sink's pacing let Slack refuse a call"
        finally:
            await fake.stop()

    run(main(), timeout=240)


def test_nothing_other_sinks_get_changes_when_slack_folds() -> None:
    """A real agent (the SDK and spanvisor's processor) with the Slack sink
    and a second sink: Slack folds, the other sink still gets every tool
    call and every end, as the audit trail (PostgreSQL) does."""

    async def main() -> None:
        fake, clock = real_slack()
        await fake.start()
        try:
            slack, other = SlackSink(clock=clock), InMemorySink()
            config = slack_config(fake.base_url, slack_board_backlog=str(BOUND))
            processor = SpanvisorSpanProcessor(sinks=[slack, other], config=config)
            provider = TracerProvider()
            provider.add_span_processor(processor)
            tracer = provider.get_tracer("busy")

            def agents() -> None:
                for i in range(6):
                    with agent_task(f"Audit {i}", agent_id=f"auditor-{i}", tracer=tracer):
                        for r in range(5):
                            tool_attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": f"scan_{i}_{r}"}
                            with tracer.start_as_current_span(f"execute_tool scan_{i}_{r}", attributes=tool_attrs):
                                pass

            await asyncio.to_thread(agents)
            await asyncio.to_thread(provider.force_flush)
            stats = processor.pipeline.stats
            await until(lambda: stats.value("slack_folded_lines_total") > 0, 90, "Slack to fold")
            tools = [e for e in other.events if isinstance(e, Checkpoint) and e.source == "tool_call"]
            assert len(tools) == 30 and len({e.event_id for e in tools}) == 30
            assert sum(e.kind == "TaskFinished" for e in other.events) == 6
            await asyncio.to_thread(provider.shutdown)
            assert len(fake.boards("#agents")) == 1
        finally:
            await fake.stop()

    run(main(), timeout=240)


def test_approvals_errors_and_final_states_go_ahead_of_progress() -> None:
    """Five tasks queue context warnings (replies that do not fold) behind
    each other; then one task asks for approval and another fails. The
    request, the error and the summary are posted before the warnings that
    were waiting, and the board shows both before those drain."""

    async def main() -> None:
        # Twice real speed: the fifteen warnings drain over seven real seconds,
        # so the request and the error arrive while most still wait, however
        # loaded the machine (the drain must not outrun the test).
        fake, clock = real_slack(speed=2.0)
        await fake.start()
        try:
            async with slack_env(fake=fake, clock=clock, slack_board_backlog=str(BOUND), flush_s=120) as env:
                tasks = [TaskScript.new(f"prio-{i}", f"agent-{i}", task_name=f"Prio {i}") for i in range(7)]
                for t in tasks:
                    await env.send(t.started())
                await until(lambda: len(fake.parents("#agents")) == 7, 60, "every task's message")
                for t in tasks[2:]:
                    for k in range(3):
                        await env.send(t.warning("warning", 150_000 + k, 200_000, 0.7))

                def warnings_posted() -> list[Any]:
                    return [
                        c
                        for c in fake.calls_to("chat.postMessage", ok=True)
                        if c.args.get("thread_ts") and "Context window" in str(c.args.get("text"))
                    ]

                await until(lambda: len(warnings_posted()) >= 2, 60, "the warnings to start draining")
                ask, fail = tasks[0], tasks[1]
                await env.send(asked(ask, "Deploy the canary?"))
                await env.send(fail.finished("error", error_type="Boom", error_message="it broke"))
                before = len(warnings_posted())

                def posted(words: str) -> int | None:
                    posts = fake.calls_to("chat.postMessage", ok=True)
                    return next((i for i, c in enumerate(posts) if words in str(c.args.get("text"))), None)

                await until(lambda: posted("Approval needed") is not None, 60, "the approval request")
                await until(lambda: posted("Failed: Boom") is not None, 60, "the error")
                await until(lambda: row_for(fake, "Prio 1") is not None and "failed at" in str(row_for(fake, "Prio 1")))
                await until(lambda: "Deploy the canary" in str(row_for(fake, "Prio 0")), 60, "the board's request")
                drained_then = len(warnings_posted())
                assert await env.sink.force_flush(120)
                total = len(warnings_posted())
                assert total == 15, total  # every warning posted in the end
                # Ahead of the warnings that were waiting: at most a few had their turn already.
                posts = fake.calls_to("chat.postMessage", ok=True)
                order = [str(c.args.get("text")) for c in posts]
                for words in ("Approval needed", "Failed: Boom", "Prio 1"):
                    at = next(i for i, s in enumerate(order) if words in s and "Context window" not in s)
                    warned = sum(1 for s in order[:at] if "Context window" in s)
                    assert warned <= before + 3, (words, warned, before)
                assert drained_then < total, "the warnings had drained: no test"
                assert len(fake.boards("#agents")) == 1
        finally:
            await fake.stop()

    run(main(), timeout=240)


def test_a_parent_whose_task_needs_a_person_goes_ahead_of_waiting_parents() -> None:
    async def main() -> None:
        # At twice real speed the eight parents past the burst drain over four
        # real seconds: the question lands while most still wait, even on a
        # loaded machine (at ten times it raced the drain and lost at CI).
        fake, clock = real_slack(speed=2.0)
        await fake.start()
        try:
            async with slack_env(fake=fake, clock=clock, slack_board_backlog=str(BOUND), flush_s=120) as env:
                tasks = [TaskScript.new(f"wait-{i}", f"agent-{i}", task_name=f"Wait {i}") for i in range(12)]
                for t in tasks:
                    await env.send(t.started())
                await until(lambda: env.sink.transport.turns.waiting("#agents") >= 6, 30, "parents waiting")
                await env.send(asked(tasks[-1], "Drop the table?"))
                # The parents that had taken their turns when the question
                # arrived (posted or on their way), and one more that may take
                # its turn before the sink reranks; every other comes after it.
                waiting = env.sink.transport.turns.waiting("#agents")
                assert waiting >= 2, "the drain outran the test: nothing to overtake"
                ahead = 12 - waiting + 1
                await until(lambda: len(fake.parents("#agents")) == 12, 60, "every parent")
                names = [text_of(p) for p in fake.parents("#agents")]
                at = next(i for i, s in enumerate(names) if "Wait 11" in s)
                assert at <= ahead, (ahead, [n[:60] for n in names])  # ahead of every parent still waiting
                assert "Drop the table" in names[at]
        finally:
            await fake.stop()

    run(main(), timeout=180)


def test_a_channel_that_caught_up_says_what_folded_and_threads_again() -> None:
    """Once the channel is calm it unfolds: a task still running gets one
    reply of what folded (counts and the newest calls), which is its work
    log from then on, and its next calls are in its thread again."""

    async def main() -> None:
        fake, clock = real_slack()
        await fake.start()
        try:
            async with slack_env(fake=fake, clock=clock, slack_board_backlog=str(BOUND), flush_s=120) as env:
                tasks = await _fold(env, "calm")
                await until(lambda: env.stats.value("slack_folded_lines_total") > 0, 60, "tool calls folded")
                await until(lambda: env.sink.deliverer.boards.folded_channels() == 1, 60, "the channel folded")
                runner = next(t for t in tasks if env.sink._tasks[t.view.task_id].folded is not None)
                for t in tasks:
                    if t is not runner:
                        await env.send(t.finished("complete"))
                await until(lambda: env.sink.deliverer.boards.folded_channels() == 0, 90, "the channel to catch up")
                (parent,) = [p for p in fake.parents("#agents") if str(runner.view.task_name) in text_of(p)]

                def thread() -> str:
                    return " ".join(text_of(m) for m in fake.thread(parent))

                await until(lambda: "Folded while the channel was busy" in thread(), 60, "the reply of what folded")
                await env.send(tool(runner, "after_the_storm"))
                await until(lambda: "after_the_storm" in thread(), 60, "the next call in the thread")
                await env.send(runner.finished("complete"))
                assert await env.sink.force_flush(60)
                assert thread().count("Folded while the channel was busy") <= 1
        finally:
            await fake.stop()

    run(main(), timeout=240)


async def _fold(env: Env, prefix: str, n: int = 6) -> list[TaskScript]:
    tasks = [TaskScript.new(f"{prefix}-{i}", f"{prefix}-agent-{i}", task_name=f"{prefix} {i}") for i in range(n)]
    for t in tasks:
        await env.send(t.started())
    for r in range(4):
        for t in tasks:
            await env.send(tool(t, f"{prefix}_call_{r}"))
    return tasks


def test_the_board_is_one_message_across_a_restart() -> None:
    """The board's message is claimed and stored like a parent: a restarted
    sink on the same state store edits that board, and posts no other."""

    async def main() -> None:
        fake, clock = real_slack()
        await fake.start()
        store = InMemoryStateStore()
        try:
            async with slack_env(
                fake=fake, clock=clock, store=store, slack_board_backlog=str(BOUND), flush_s=120
            ) as env:
                first = await _fold(env, "before")
                await until(lambda: len(fake.boards("#agents")) == 1, 60, "the board")
                for t in first:
                    await env.send(t.finished("complete"))
                assert await env.sink.force_flush(120)
            (board,) = fake.boards("#agents")
            stored = await store.get("slack.board", "#agents")
            assert stored is not None and stored["ts"] == board.ts
            edits = board.edits
            async with slack_env(
                fake=fake, clock=clock, store=store, slack_board_backlog=str(BOUND), flush_s=120
            ) as env:
                later = TaskScript.new("after-0", "after-agent", task_name="After 0")
                await env.send(later.started(), tool(later, "read"))
                await until(lambda: row_for(fake, "After 0") is not None, 60, "the new task on the old board")
                await env.send(later.finished("error", error_type="Oops"))
                assert await env.sink.force_flush(60)
                await until(lambda: "failed at" in str(row_for(fake, "After 0")), 60, "its end on the board")
            assert [b.ts for b in fake.boards("#agents")] == [board.ts]
            assert fake.boards("#agents")[0].edits > edits
            # The rows of the run before the restart are still there, as they ended.
            assert all(str(row_for(fake, f"before {i}")).endswith("· complete") for i in range(6))
        finally:
            await fake.stop()

    run(main(), timeout=240)


def test_two_replicas_fold_into_one_board_showing_both_replicas_tasks() -> None:
    async def main() -> None:
        fake, clock = real_slack()
        await fake.start()
        store = InMemoryStateStore()
        try:
            kw: dict[str, Any] = {
                "fake": fake,
                "clock": clock,
                "store": store,
                "slack_board_backlog": str(BOUND),
                "flush_s": 120,
            }
            async with slack_env(**kw) as a, slack_env(**kw) as b:
                left, right = await asyncio.gather(_fold(a, "left", 6), _fold(b, "right", 6))
                await until(lambda: len(fake.boards("#agents")) >= 1, 60, "a board")
                for t in left:
                    await a.send(t.finished("complete"))
                for t in right:
                    await b.send(t.finished("cancelled"))
                assert await a.sink.force_flush(120) and await b.sink.force_flush(120)
                assert await a.sink.force_flush(120) and await b.sink.force_flush(120)

                def all_shown() -> bool:
                    left_done = all(str(row_for(fake, f"left {i}")).endswith("· complete") for i in range(6))
                    return left_done and all(str(row_for(fake, f"right {i}")).endswith("· cancelled") for i in range(6))

                await until(all_shown, 60, "both replicas' tasks on the one board")
            assert len(fake.boards("#agents")) == 1
            assert not fake.deleted, "a second board was posted (and deleted)"
        finally:
            await fake.stop()

    run(main(), timeout=240)


# --- under reordering and replays, the board and every parent end on the final state ----

OUTCOMES = ("complete", "error", "cancelled")


def _script(i: int, outcome: str, n_tools: int, asks: bool) -> list[Event]:
    s = TaskScript.new(f"prop-{i}", f"prop-agent-{i}", task_name=f"Prop {i}")
    events: list[Event] = [s.started()]
    for k in range(n_tools):
        events.append(tool(s, f"step_{k}"))
        if asks and k == 0:
            events.append(asked(s, f"Go on with prop {i}?"))
            events.append(s.checkpoint("working", approvals=()))
    events.append(s.checkpoint(progress=60.0, message="more than half"))
    kw = {"error_type": "Broken", "error_message": "it broke"} if outcome == "error" else {}
    events.append(s.finished(outcome, **kw))
    return events


async def _posted_board(fake: FakeSlack, store: InMemoryStateStore) -> None:
    """A board an earlier run left in the channel (as a restart finds it)."""
    answer = fake.api.call(
        "chat.postMessage",
        "xoxb-test",
        {
            "channel": "#agents",
            "text": "board",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Tasks here"}}],
            "metadata": {"event_type": "spanvisor_board", "event_payload": {"board": "#agents"}},
        },
    )
    body = answer[1]
    await store.put("slack.board", "#agents", {"channel": body["channel"], "ts": body["ts"]}, "earlier-run")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.tuples(st.sampled_from(OUTCOMES), st.integers(0, 3), st.booleans()), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    replays=st.integers(0, 6),
)
def test_under_reordering_and_replays_the_board_and_each_parent_end_on_the_final_state(
    plan: list[tuple[str, int, bool]], seed: int, replays: int
) -> None:
    scripts = [_script(i, outcome, n, asks) for i, (outcome, n, asks) in enumerate(plan)]
    rng = random.Random(seed)
    events = [e for s in scripts for e in s]
    rng.shuffle(events)
    for _ in range(replays):  # a replay: an event delivered again, anywhere later
        e = rng.choice(events)
        events.insert(rng.randrange(events.index(e), len(events) + 1), e)

    async def main() -> None:
        fake = FakeSlack(channel_rate=200.0, channel_burst=200)
        await fake.start()
        store = InMemoryStateStore()
        await _posted_board(fake, store)
        try:
            fast = {"slack_channel_interval_s": 0.0, "slack_reply_interval_s": 0.0, "slack_update_interval_s": 0.05}
            async with slack_env(fake=fake, store=store, slack_board_backlog="1", flush_s=30, **fast) as env:
                for chunk in range(0, len(events), 3):
                    await env.send(*events[chunk : chunk + 3])
                    await asyncio.sleep(0)
                assert await env.sink.force_flush(30)
                assert await env.sink.force_flush(30)
            for i, (outcome, _, _) in enumerate(plan):
                row = row_for(fake, f"Prop {i}")
                said = "· failed at" in str(row) if outcome == "error" else str(row).endswith(f"· {outcome}")
                assert row is not None and said, (i, outcome, board_lines(fake))
                (parent,) = [p for p in fake.parents("#agents") if f"Prop {i}" in text_of(p)]
                assert f" · {outcome} — " in str(parent.text), (i, outcome, parent.text)
            assert len(fake.boards("#agents")) == 1
            counts = Counter(str(p.text) for p in fake.parents("#agents"))
            assert len(counts) == len(plan)
        finally:
            await fake.stop()

    run(main(), timeout=120)


def test_started_events_alone_make_no_board_in_a_quiet_channel() -> None:
    """Below the bound nothing folds and no board is posted."""

    async def main() -> None:
        fake, clock = real_slack()
        await fake.start()
        try:
            async with slack_env(fake=fake, clock=clock, flush_s=60) as env:  # the default bound, 10 posts
                s = TaskScript.new("quiet-0", task_name="Quiet")
                await env.send(s.started(), tool(s, "read"), tool(s, "write"), s.finished("complete"))
                assert await env.sink.force_flush(60)
            assert fake.boards("#agents") == [] and len(fake.parents("#agents")) == 1
            assert env.stats.value("slack_folded_lines_total") == 0
        finally:
            await fake.stop()

    run(main())


def test_a_full_board_drops_working_tasks_last_steps_before_it_drops_a_task() -> None:
    """A hundred tasks, thirty of them waiting with their questions: the
    working rows' last steps go before any working task does (a task left
    off may have no message of its own yet: a busy channel posts one a
    second). bench_fleet's setup (d) left 11 working tasks off, three of
    them just answered and unseen for 12-17 s."""
    rows = [
        Row(
            f"t-{i:03d}",
            f"fix the flaky test in tests/test_io.py number {i:03d}",
            f"fl-d-{i:03d}",
            "awaiting_approval" if i < 30 else "working",
            1,
            last=f"Tool: run_shell_command(ls fle{i:03d}n0000 and then some more words)",
            question=f"Allow Bash: git push origin feature/branch-{i:03d}-with-a-long-name?" if i < 30 else "",
            link=f"C0AGENTS/17000000{i:02d}.000100",
            since=1_700_000_000.0,
        )
        for i in range(100)
    ]
    payload, _ = board_payload(rows, Look(), folded=True, team_url="https://acme.slack.com/")
    text = json.dumps(payload["blocks"], ensure_ascii=False)
    assert not blocks_problems(payload), blocks_problems(payload)
    assert all(f"fl-d-{i:03d}" in text for i in range(100)), "a task left off the board"
    assert "and 0" not in text and "working: each task" not in text
    assert all(f"branch-{i:03d}" in text for i in range(30))  # every question, whole
    few, _ = board_payload(rows[25:35], Look(), folded=True, team_url=None)
    assert "fle030n0000" in json.dumps(few["blocks"])  # room enough: last steps shown
