"""The Telegram sink against the fake Bot API: one message per task edited
in place, its story as replies in order, text escaped and within
Telegram's length, nothing posted twice across a restart, Telegram's limits
kept (no 429 storm) and a refusal counted without stopping other tasks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

from spanvisor.events import ApprovalRequest, Decision, HumanIntervention, TaskView
from spanvisor.statestores.memory import InMemoryStateStore
from tests.fakes.telegram_api import MAX_TEXT, FakeTelegram, utf16_len
from tests.taskscript import ScaledClock, TaskScript
from tests.telegram.telegram_support import FAST, GROUP, TOKEN, Env, fast_fake, telegram_env

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def _demo(env: Env) -> tuple[TaskScript, TaskScript]:
    ok = TaskScript.new("task-ok", "rivet", task_name="Diagnose F47", steps=("triage", "route", "report"))
    bad = TaskScript.new("task-bad", "sprocket", task_name="Migrate <schema> & data")
    await env.send(ok.started(), bad.started())
    assert await env.sink.force_flush(10)  # both messages are out: what follows edits them
    await env.send(ok.checkpoint(progress=10.0, step="triage", message="Reading the alarm"))
    await env.send(ok.checkpoint(progress=30.0, step="route"))
    await env.send(bad.checkpoint(progress=20.0, message="Dumping <tables>"))
    await env.send(ok.checkpoint(progress=60.0, step="report"))
    await env.send(ok.artifact("report.md", "https://files.example/report.md"))
    await env.send(bad.finished("error", error_type="OperationalError", error_message="connection <refused>"))
    await env.send(ok.checkpoint(progress=100.0, message="Done"))
    await env.send(ok.finished("complete"))
    assert await env.sink.force_flush(20)
    return ok, bad


def test_each_task_is_one_message_edited_in_place_with_its_story_as_replies_in_order() -> None:
    async def main() -> None:
        async with telegram_env(**FAST) as env:
            await _demo(env)
            parents = env.parents()
            assert len(parents) == 2
            by_name = {p["text"].split("\n")[1]: p for p in parents}
            ok = by_name["Diagnose F47"]
            assert ok["text"].startswith("✅ rivet · complete")
            assert "100%" in ok["text"]
            replies = env.replies(ok)
            lines = [x for t in replies for x in t.split("\n")]
            # In the order they happened: steps and milestones, the artifact, the summary last (alone).
            assert replies[-1].startswith("✅ Complete"), replies
            assert any(x.startswith("📎 Artifact") or "report.md" in x for x in lines), lines
            assert [x.split(" ", 1)[1] for x in lines if x.endswith("reached")] == [
                "25% reached",
                "50% reached",
                "100% reached",
            ]
            bad = by_name["Migrate <schema> & data"]
            assert bad["text"].startswith("❌ sprocket · error")
            assert any("connection <refused>" in t for t in env.replies(bad))
            # Escaped as Telegram's HTML requires (the fake refuses unbalanced tags).
            sent = [c.args["text"] for c in env.fake.calls_to("sendMessage", ok=True)]
            assert any("Migrate &lt;schema&gt; &amp; data" in t for t in sent)
            assert not env.fake.calls_to("sendMessage", ok=False) and not env.fake.calls_to("editMessageText", ok=False)
            # The parent was edited, never sent again.
            assert len(env.fake.calls_to("editMessageText", ok=True)) >= 2
            assert len(env.fake.calls_to("sendMessage", ok=True)) == 2 + sum(len(env.replies(p)) for p in parents)

    run(main())


def test_a_restart_replaying_every_event_posts_nothing_twice() -> None:
    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        store = InMemoryStateStore()
        try:
            task = TaskScript.new("task-replay", "rivet", task_name="Replay me")
            events = [task.started()]
            events += [task.checkpoint(progress=float(p), message=f"at {p}") for p in (20, 40, 60, 80)]
            events.append(task.finished("complete"))
            async with telegram_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events[:3])
                assert await env.sink.force_flush(10)
            async with telegram_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events)  # the restarted process gets them all again
                assert await env.sink.force_flush(10)
                parents = env.parents()
                assert len(parents) == 1
                replies = env.replies(parents[0])
                assert len(replies) == len(set(replies)), replies
                assert parents[0]["text"].startswith("✅ rivet · complete")
        finally:
            await fake.stop()

    run(main())


def test_long_agent_text_is_cut_to_telegrams_length_and_still_sent() -> None:
    async def main() -> None:
        async with telegram_env(**FAST) as env:
            task = TaskScript.new("task-long", "rivet", task_name="x" * 10_000)
            await env.send(task.started(), task.checkpoint(message="é🙂<" * 5000, progress=5.0))
            await env.send(
                task.finished("error", error_type="E", error_message="🙂" * 9000, stacktrace="<tb>\n" * 5000)
            )
            assert await env.sink.force_flush(10)
            ok = env.fake.calls_to("sendMessage", ok=True) + env.fake.calls_to("editMessageText", ok=True)
            assert ok and all(utf16_len(c.args["text"]) <= MAX_TEXT for c in ok)
            assert not env.fake.calls_to("sendMessage", ok=False)
            assert env.parents()[0]["text"].startswith("❌ rivet · error")

    run(main())


def test_tasks_over_a_groups_limit_are_paced_not_refused_and_lose_nothing() -> None:
    """Eight tasks in one group at Telegram's own limits (20 a minute), sending
    about twice what a minute allows: paced, never refused, all shown. The
    sink and the fake share a clock ten times faster than real time."""

    async def main() -> None:
        clock = ScaledClock(10.0)
        fake = FakeTelegram(now=clock.now)
        await fake.start()
        try:
            async with telegram_env(fake=fake, clock=clock, flush_s=60) as env:
                tasks = [TaskScript.new(f"t{i}", "rivet", task_name=f"Task {i}") for i in range(8)]
                await env.send(*(t.started() for t in tasks))
                await env.send(*(t.checkpoint(progress=50.0) for t in tasks))
                await env.send(*(t.finished("complete") for t in tasks))
                assert await env.sink.force_flush(60)
                parents = env.parents()
                assert len(parents) == 8 and all(p["text"].startswith("✅") for p in parents)
                assert all(env.replies(p)[-1].split(" ", 1)[1].startswith("Complete") for p in parents)
                assert not [c for c in fake.calls if c.status == 429], "a call was refused"
                assert len(fake.calls) > 20  # more than a minute allows: the pace was kept
        finally:
            await fake.stop()

    run(main())


def test_a_429_from_another_sender_pauses_the_chat_and_everything_arrives() -> None:
    async def main() -> None:
        fake = FakeTelegram(chat_per_second=1.0, chat_burst=1, group_per_minute=6000)
        await fake.start()
        try:
            async with telegram_env(fake=fake, **FAST) as env:
                task = TaskScript.new("t-429", "rivet", task_name="Paused")
                await env.send(task.started(), task.checkpoint(progress=30.0), task.finished("complete"))
                assert await env.sink.force_flush(30)
                assert [c for c in fake.calls if c.status == 429], "the sink's own pace was above the fake's"
                assert env.stats.value("telegram_rate_limited_total") >= 1
                assert env.parents()[0]["text"].startswith("✅")
                assert len(env.replies(env.parents()[0])) >= 2
        finally:
            await fake.stop()

    run(main())


def test_a_refused_chat_is_counted_and_logged_and_other_work_goes_on() -> None:
    async def main() -> None:
        async with telegram_env(**FAST) as env:
            env.fake.blocked.add(GROUP)
            task = TaskScript.new("t-blocked", "rivet")
            await env.send(task.started(), task.finished("complete"))
            assert await env.sink.force_flush(10)
            assert env.stats.value("dropped_total", reason="telegram_refused", sink="telegram") >= 1
            env.fake.blocked.discard(GROUP)
            other = TaskScript.new("t-after", "rivet")
            await env.send(other.started(), other.finished("complete"))
            assert await env.sink.force_flush(10)
            assert any(p["text"].startswith("✅") for p in env.parents())

    run(main())


def test_old_events_replayed_after_the_end_never_move_the_message_back() -> None:
    """A restarted process gets a task's early events again (the exporter's
    retry, a journal's replay) after its message showed the end: the message
    keeps the end and no line is posted twice; a decision on the finished
    task (ids only) adds its reply and leaves the message as it is."""

    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        store = InMemoryStateStore()
        try:
            task = TaskScript.new("task-old", "rivet", task_name="Old news")
            early = [task.started(), task.checkpoint(progress=30.0, message="early")]
            end = task.finished("complete")
            async with telegram_env(fake=fake, store=store, **FAST) as env:
                await env.send(*early, end)
                assert await env.sink.force_flush(10)
                [parent] = env.parents()
                final_text = parent["text"]
                replies = env.replies(parent)
            async with telegram_env(fake=fake, store=store, **FAST) as env:
                await env.send(*early)
                assert await env.sink.force_flush(10)
                assert env.parents()[0]["text"] == final_text
                assert env.replies(env.parents()[0]) == replies
                ack = Decision("ack-1", "task-old", "acknowledge", "U1", end.time_ns + 1, actor_name="Ada <admin>")
                bare = TaskView(task_id="task-old", trace_id=task.view.trace_id, root_span_id="", agent_id="")
                await env.send(
                    HumanIntervention(event_id="ack-1", time_ns=ack.time_ns, task=bare, decision=ack, known=False)
                )
                assert await env.sink.force_flush(10)
                [parent] = env.parents()
                assert parent["text"] == final_text
                assert len(env.replies(parent)) == len(replies) + 1 and "Ada <admin>" in env.replies(parent)[-1]
        finally:
            await fake.stop()

    run(main())


def test_routes_send_each_agents_tasks_to_its_own_chat_and_count_what_no_chat_takes() -> None:
    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        fake.chat(-1002, "supergroup")
        try:
            routes = {"telegram_routes": "agent:sprocket=-1002, repo:acme/*=-1002"}
            async with telegram_env(fake=fake, **FAST, **routes) as env:
                ops = TaskScript.new("t-ops", "sprocket", task_name="Ops task")
                acme = TaskScript.new("t-acme", "rivet", task_name="Acme task", repo="acme/plant")
                home = TaskScript.new("t-home", "rivet", task_name="Home task")
                for t in (ops, acme, home):
                    await env.send(t.started(), t.finished("complete"))
                assert await env.sink.force_flush(10)
                assert sorted(p["text"].split("\n")[1] for p in env.parents(-1002)) == ["Acme task", "Ops task"]
                assert [p["text"].split("\n")[1] for p in env.parents()] == ["Home task"]
            # No default chat: a task no rule matches is not shown, and counted once.
            async with telegram_env(fake=fake, telegram_chat="", **FAST, **routes) as env:
                lost = TaskScript.new("t-nowhere", "cog")
                await env.send(lost.started(), lost.checkpoint(progress=10.0), lost.finished("complete"))
                assert await env.sink.force_flush(10)
                assert env.stats.value("dropped_total", reason="telegram_unrouted", sink="telegram") == 1
        finally:
            await fake.stop()

    run(main())


def test_a_status_route_or_a_bad_chat_in_a_route_is_a_clear_configuration_error() -> None:
    from spanvisor.chat.routes import p_routes
    from spanvisor_telegram.settings import config_problem

    status = config_problem(TOKEN, "-1001", "https://api.telegram.org", p_routes("status:error=-1009"))
    assert status is not None and "route by agent or repo" in status
    named = config_problem(TOKEN, "-1001", "https://api.telegram.org", p_routes("agent:x=ops"))
    assert named is not None and "SPANVISOR_TELEGRAM_ROUTES (agent:x)" in named
    assert config_problem(TOKEN, None, "https://api.telegram.org", p_routes("agent:x=-1003")) is None
    assert config_problem("700000001:a/b?c", "-1001", "https://api.telegram.org") is not None  # a token fit for no path


def test_in_a_forum_each_task_gets_a_topic_with_its_message_and_story() -> None:
    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        forum = fake.chat(-1005, "supergroup", forum=True)
        try:
            async with telegram_env(fake=fake, chat=-1005, **FAST) as env:
                a = TaskScript.new("t-a", "rivet", task_name="First <one>")
                b = TaskScript.new("t-b", "cog", task_name="Second")
                for t in (a, b):
                    await env.send(t.started(), t.checkpoint(progress=60.0), t.finished("complete"))
                assert await env.sink.force_flush(10)
                assert sorted(forum.topics.values()) == ["cog · Second", "rivet · First <one>"]
                for topic, name in forum.topics.items():
                    in_topic = [m for m in forum.messages.values() if m.get("message_thread_id") == topic]
                    parents = [m for m in in_topic if "reply_to_message" not in m]
                    assert len(parents) == 1 and name.split(" · ")[1] in parents[0]["text"]
                    assert len(in_topic) > 1  # its story is there too
                assert all("message_thread_id" in m for m in forum.messages.values())
            # Topics off: the General topic, as in any group.
            async with telegram_env(fake=fake, chat=-1005, telegram_topics="false", **FAST) as env:
                c = TaskScript.new("t-c", "rivet", task_name="Third")
                await env.send(c.started(), c.finished("complete"))
                assert await env.sink.force_flush(10)
                assert len(forum.topics) == 2
                assert any("Third" in m["text"] and "message_thread_id" not in m for m in forum.messages.values())
        finally:
            await fake.stop()

    run(main())


def test_telegram_away_delays_the_story_and_loses_or_doubles_nothing() -> None:
    """The Bot API unreachable (connection refused) while a task goes on:
    export returns at once, the calls wait and are tried again with
    backoff, and when it answers again the message shows the end and every
    line is there once."""

    async def main() -> None:
        fake = fast_fake()
        port = int((await fake.start()).rsplit(":", 1)[1])
        try:
            async with telegram_env(fake=fake, flush_s=30, **FAST) as env:
                task = TaskScript.new("t-away", "rivet", task_name="Through an outage")
                await env.send(task.started())
                assert await env.sink.force_flush(10)
                await fake.stop()
                loop = asyncio.get_running_loop()
                began = loop.time()
                await env.send(*(task.checkpoint(progress=float(p)) for p in (25, 50, 75)), task.finished("complete"))
                assert loop.time() - began < 0.5  # export never waits on Telegram
                assert not await env.sink.force_flush(1.0)  # nothing can be out yet
                await fake.start(port)
                assert await env.sink.force_flush(30)
                [parent] = env.parents()
                assert parent["text"].startswith("✅ rivet · complete")
                lines = [x for t in env.replies(parent) for x in t.split("\n")]
                reached = [x for x in lines if x.endswith("reached")]
                assert reached == ["📍 25% reached", "📍 50% reached", "📍 75% reached"], lines
                assert sum(x.startswith("✅ Complete") for x in lines) == 1
        finally:
            await fake.stop()

    run(main())


def test_agent_text_cannot_push_a_question_out_and_a_lone_surrogate_is_no_failure() -> None:
    """Text the agent writes counts as Telegram counts it after escaping (an
    ``&`` is five units): a task name, message and action full of them keep
    the question whole in the message; and a file name Python decoded with
    surrogateescape is shown with U+FFFD instead of stopping the task."""

    async def main() -> None:
        async with telegram_env(**FAST) as env:
            amp = "&" * 3000
            task = TaskScript.new("t-amp", "rivet", task_name=amp, repo=amp, branch=amp)
            action = json.dumps({"tool": "Bash", "arguments": {"command": "&" * 850 + " rm -rf /the-end"}})
            asks = tuple(ApprovalRequest(f"a{i}", f"Question {i} {amp}", action=action) for i in range(3))
            await env.send(task.started(), task.checkpoint(status="awaiting_approval", message=amp, approvals=asks))
            odd = TaskScript.new("t-odd", "rivet", task_name="report-\udcff.txt")
            await env.send(odd.started(), odd.finished("complete"))
            assert await env.sink.force_flush(10)
            sent = env.fake.calls_to("sendMessage", ok=True) + env.fake.calls_to("editMessageText", ok=True)
            assert sent and all(utf16_len(c.args["text"]) <= MAX_TEXT for c in sent)
            shown = next(p for p in env.parents() if "Question 0" in p["text"])
            assert "rm -rf /the-end" in shown["text"]  # the action's end is never cut off
            assert any("report-\ufffd.txt" in p["text"] for p in env.parents())
            assert not env.fake.calls_to("sendMessage", ok=False)

    run(main())


def test_an_edit_telegram_already_shows_is_no_refusal() -> None:
    """ "Message is not modified" (a replay after the record of what the
    message shows was lost, or another replica's same edit) is success: the
    task goes on and nothing is counted as refused."""

    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        store = InMemoryStateStore()
        try:
            task = TaskScript.new("t-same", "rivet", task_name="Same again")
            events = [task.started(), task.checkpoint(progress=50.0), task.finished("complete")]
            async with telegram_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events)
                assert await env.sink.force_flush(10)
            store._entries.pop(("telegram.shown", "t-same"))  # the store lost what the message shows
            async with telegram_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events)
                assert await env.sink.force_flush(10)
                assert env.stats.value("dropped_total", reason="telegram_refused", sink="telegram") == 0
                assert [c for c in fake.calls if "not modified" in str(c.response.get("description"))]
        finally:
            await fake.stop()

    run(main())


def test_shutdown_keeps_to_its_timeout_with_telegram_away_and_counts_what_it_leaves() -> None:
    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        async with telegram_env(fake=fake, **FAST) as env:
            task = TaskScript.new("t-bye", "rivet")
            await env.send(task.started())
            assert await env.sink.force_flush(10)
            await fake.stop()
            await env.send(task.checkpoint(progress=50.0), task.finished("complete"))
            loop = asyncio.get_running_loop()
            began = loop.time()
            await env.sink.shutdown(2.0)
            assert loop.time() - began < 3.0  # its timeout, and a second for a loaded machine
            assert env.stats.value("dropped_total", reason="telegram_undelivered", sink="telegram") >= 1

    run(main())


def test_a_stored_place_no_setting_names_gets_nothing() -> None:
    """Whoever may write the state store (or a chat dropped from the settings)
    must not send a task's story to a chat no setting names: the task's
    updates are dropped, counted, and nothing goes to either chat."""

    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        other = -1002
        fake.chat(other, "supergroup")
        store = InMemoryStateStore()
        try:
            task = TaskScript.new("task-moved", "rivet", task_name="Moved")
            async with telegram_env(fake=fake, store=store, chat=other, **FAST) as env:
                await env.send(task.started())
                assert await env.sink.force_flush(10)
            before = len(fake.calls)
            async with telegram_env(fake=fake, store=store, **FAST) as env:
                await env.send(task.checkpoint(progress=50.0, message="half"), task.finished("complete"))
                assert await env.sink.force_flush(10)
                sent = [c for c in fake.calls[before:] if c.method in ("sendMessage", "editMessageText")]
                assert sent == [], sent
                assert env.stats.value("dropped_total", reason="telegram_misplaced", sink="telegram") >= 1
        finally:
            await fake.stop()

    run(main())


def test_a_forum_topic_made_before_a_stop_is_the_tasks_after_it() -> None:
    """The process stops (or crashes) after making a task's topic and before
    its message went out: the next one puts the message in that topic, never
    in a second, empty one."""

    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        forum = fake.chat(-1006, "supergroup", forum=True)
        store = InMemoryStateStore()
        task = TaskScript.new("t-topic", "rivet", task_name="Once")
        try:
            # One call a minute: the topic takes it, the message waits past shutdown's deadline.
            slow = {"telegram_group_per_minute": 1.0, "telegram_chat_per_minute": 1.0}
            async with telegram_env(fake=fake, store=store, chat=-1006, flush_s=0.5, **slow) as env:
                await env.send(task.started())
                for _ in range(200):
                    if forum.topics:
                        break
                    await asyncio.sleep(0.01)
            assert len(forum.topics) == 1 and not forum.messages
            async with telegram_env(fake=fake, store=store, chat=-1006, **FAST) as env:
                await env.send(task.started(), task.finished("complete"))
                assert await env.sink.force_flush(10)
            [topic] = forum.topics
            assert len(forum.topics) == 1
            assert forum.messages and all(m.get("message_thread_id") == topic for m in forum.messages.values())
        finally:
            await fake.stop()

    run(main())
