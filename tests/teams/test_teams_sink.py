"""The Teams sink against the fake Bot Connector: one card per task at the
root of its own thread, edited in place, its story as replies in order,
agent text shown literally and within Teams' size however long, nothing
posted twice across a restart nor a card moved back by old events, Teams'
own limits kept (paced, no 429; another sender's 429 waited out), a
refused channel counted without stopping other channels, routes and their
configuration errors, Teams failing or away (nothing lost or doubled, a
202 without a body taken, shutdown within its timeout), and a new question
for a person shown before the replies waiting in its thread.

The tests of Teams' limits run the sink and the fake on one manual clock
the test moves on (:func:`~tests.teams.teams_support.drive`): Teams'
seconds pass only while the test's loop runs, so a busy machine slows the
test down and never makes a call land sooner than its pace allowed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from spanvisor.events import ApprovalRequest, Decision, Event, HumanIntervention, TaskView
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_teams.limits import THREAD_BURST
from spanvisor_teams.render import MAX_CARD, size
from tests.fakes.teams_api import FakeTeams
from tests.taskscript import ManualClock, TaskScript
from tests.teams.teams_support import (
    CHANNEL,
    FAST,
    AwayTeams,
    Env,
    advance_until,
    card_of,
    drive,
    fast_fake,
    other_sender,
    running,
    sent_requests,
    shown,
    story_once,
    teams_env,
    texts,
    until,
)

T = TypeVar("T")
OTHER = "19:other@thread.tacv2"
ROUTED: dict[str, Any] = {"teams_routes": f"agent:rivet={OTHER}"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def _demo(env: Env) -> tuple[TaskScript, TaskScript]:
    ok = TaskScript.new("task-ok", "rivet", task_name="Diagnose F47", steps=("triage", "route", "report"))
    bad = TaskScript.new("task-bad", "sprocket", task_name="Migrate [schema](https://evil.example) **now**")
    await env.send(ok.started(), bad.started())
    assert await env.sink.force_flush(10)  # both cards are out: what follows edits them
    await env.send(ok.checkpoint(progress=10.0, step="triage", message="Reading the alarm"))
    await env.send(ok.checkpoint(progress=30.0, step="route"))
    await env.send(bad.checkpoint(progress=20.0, message="Dumping {{DATE(2017-02-14T06:00:00Z)}}"))
    await env.send(ok.checkpoint(progress=60.0, step="report"))
    await env.send(ok.artifact("report.md", "https://files.example/report.md"))
    await env.send(bad.finished("error", error_type="OperationalError", error_message="connection <refused>"))
    await env.send(ok.checkpoint(progress=100.0, message="Done"))
    await env.send(ok.finished("complete"))
    assert await env.sink.force_flush(20)
    return ok, bad


def _by_name(env: Env) -> dict[str, dict[str, Any]]:
    return {shown(root).split("\n")[1]: root for root in env.roots()}


def test_each_task_is_one_card_edited_in_place_with_its_story_as_replies_in_order() -> None:
    async def main() -> None:
        async with teams_env(**FAST) as env:
            await _demo(env)
            roots = env.roots()
            assert len(roots) == 2
            by_name = _by_name(env)
            ok = by_name["Diagnose F47"]
            assert shown(ok).startswith("✅ rivet · complete"), shown(ok)
            assert "100%" in shown(ok)
            replies = [shown(r) for r in env.replies(ok)]
            lines = [x for t in replies for x in t.split("\n")]
            assert replies[-1].startswith("✅ Complete"), replies
            assert any("report.md" in x for x in lines), lines
            assert [x for x in lines if x.endswith("reached")] == [
                "📍 25% reached",
                "📍 50% reached",
                "📍 100% reached",
            ]
            bad = by_name["Migrate [schema](https://evil.example) **now**"]
            assert shown(bad).startswith("❌ sprocket · error")
            assert any("connection <refused>" in shown(r) for r in env.replies(bad))
            # The card was updated in place, never sent again; nothing refused.
            assert len(env.fake.calls_to("POST", "create")) == 2
            assert len(env.fake.calls_to("PUT", "update")) >= 2
            assert all(c.status < 400 for c in env.fake.calls), [c for c in env.fake.calls if c.status >= 400]

    run(main())


def test_agent_text_is_never_markdown_or_a_date_function() -> None:
    async def main() -> None:
        async with teams_env(**FAST) as env:
            await _demo(env)
            for root in env.roots():
                for activity in [root, *env.replies(root)]:
                    card = card_of(activity)
                    blocks = json.dumps([b for b in _walk(card) if b.get("type") == "TextBlock"])
                    assert "evil.example" not in blocks and "DATE(" not in blocks
                    assert "{{DATE" not in json.dumps(card)  # broken so Teams never evaluates it

    run(main())


def _walk(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            out += _walk(v)
    elif isinstance(node, list):
        for v in node:
            out += _walk(v)
    return out


def test_a_restart_replaying_every_event_posts_nothing_twice() -> None:
    async def main() -> None:
        fake = fast_fake()
        await fake.start()
        fake.channel(CHANNEL)
        store = InMemoryStateStore()
        try:
            task = TaskScript.new("task-replay", "rivet", task_name="Replay me")
            events: list[Event] = [task.started()]
            events += [task.checkpoint(progress=float(p), message=f"at {p}") for p in (20, 40, 60, 80)]
            events.append(task.finished("complete"))
            async with teams_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events[:3])
                assert await env.sink.force_flush(10)
            async with teams_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events)  # the restarted process gets them all again
                assert await env.sink.force_flush(10)
                roots = env.roots()
                assert len(roots) == 1
                replies = [shown(r) for r in env.replies(roots[0])]
                assert len(replies) == len(set(replies)), replies
                assert shown(roots[0]).startswith("✅ rivet · complete")
        finally:
            await fake.stop()

    run(main())


def test_long_agent_text_keeps_every_activity_within_teams_size_and_is_still_sent() -> None:
    """10,000-character names, a megabyte of details and of action, 9,000
    emoji, a long stack trace: every activity stays under what the fake
    takes (28 KB here, the most conservative figure) and the card under
    MAX_CARD, the question's action keeps its end, the trace's last line
    shows, and nothing is refused."""

    async def main() -> None:
        async with running(fast_fake(max_activity=28 * 1024)) as fake:
            async with teams_env(fake=fake, **FAST) as env:
                task = TaskScript.new(
                    "task-long", "rivet", task_name="x" * 10_000, repo="r" * 10_000, branch="🙂" * 9000
                )
                action = json.dumps({"tool": "Bash", "arguments": {"command": "é🙂{{" * 250_000 + " rm -rf /the-end"}})
                ask = ApprovalRequest("a-long", "q" * 10_000, details="d" * 1_000_000, action=action)
                await env.send(
                    task.started(),
                    task.checkpoint(message="é🙂{{<" * 5000, progress=5.0, step="s" * 10_000),
                    task.checkpoint("awaiting_approval", approvals=(ask,)),
                )
                assert await env.sink.force_flush(20)
                assert "rm -rf /the-end" in json.dumps(card_of(env.roots()[0]))  # the action's end is never cut
                trace = "Traceback (most recent call last):\n" + '  File "x.py", line 1\n' * 50_000
                await env.send(
                    task.checkpoint("working", approvals=()),
                    task.artifact("a" * 10_000, "https://files.example/" + "y" * 10_000),
                    task.finished(
                        "error", error_type="E" * 10_000, error_message="🙂" * 9000, stacktrace=trace + "Boom: the end"
                    ),
                )
                assert await env.sink.force_flush(20)
                refused = [c for c in fake.calls if c.status >= 400]
                assert not refused, refused[0].response
                sent = sent_requests(fake)
                assert len(sent) >= 4
                for request, activity in sent:
                    assert len(json.dumps(request)) <= fake.max_activity  # as aiohttp sends it
                    assert size(card_of(activity)) <= MAX_CARD
                [root] = env.roots()
                assert shown(root).startswith("❌ rivet · error")
                assert any(line.endswith("Boom: the end") for line in env.lines(root))  # a trace's end says most
                assert env.stats.total("dropped_total") == 0

    run(main())


def test_tasks_over_a_channels_and_a_threads_limits_are_paced_not_refused_and_lose_nothing() -> None:
    """Ten tasks made in one channel (Teams takes 7 a second and 8 in 2 s
    there) and one task asking 16 questions in its thread (each its own
    reply): at Teams' own limits, paced, never refused (no 429), every card
    and every line there once. The sink and the fake share a manual clock
    the test moves on, so it takes about 30 s of Teams' time and a second
    of real time, whatever the machine's speed."""

    async def main() -> None:
        clock = ManualClock()
        async with running(FakeTeams(now=clock.now)) as fake:  # Teams' limits, not scaled
            async with teams_env(fake=fake, clock=clock, flush_s=60) as env:
                tasks = [TaskScript.new(f"t{i}", "rivet", task_name=f"Task {i}") for i in range(10)]
                busy = TaskScript.new("t-busy", "cog", task_name="Busy")
                asks = tuple(ApprovalRequest(f"q{n}", f"Question {n}?") for n in range(16))
                await env.send(busy.started(), busy.checkpoint("awaiting_approval", approvals=asks))
                await env.send(*(t.started() for t in tasks))
                await env.send(*(t.checkpoint(progress=50.0) for t in tasks))
                await env.send(busy.checkpoint("working", approvals=()), busy.finished("complete"))
                await env.send(*(t.finished("complete") for t in tasks))
                assert await drive(clock, env.sink.force_flush(60))
                assert not [c for c in fake.calls if c.status == 429], "a call was refused"
                assert env.stats.value("teams_rate_limited_total") == 0
                by_name = env.by_name()
                assert sorted(by_name) == sorted(["Busy", *(f"Task {i}" for i in range(10))])
                for name, root in by_name.items():
                    assert shown(root).startswith("✅"), shown(root)
                    lines = env.lines(root)
                    assert sum(x.startswith("✅ Complete") for x in lines) == 1, lines
                    if name != "Busy":
                        assert [x for x in lines if x.endswith("reached")] == ["📍 50% reached"]
                asked = [x for x in env.lines(by_name["Busy"]) if x.startswith("✋")]
                assert asked == ["✋ Approval needed"] * len(asks), asked
                questions = [x for r in env.replies(by_name["Busy"]) for x in shown(r).split("\n")]
                assert [x for x in questions if x.startswith("Question")] == [f"Question {n}?" for n in range(16)]
                # More than Teams takes at once, in the channel and in the thread: the pace was kept.
                assert len(fake.calls_to("POST", "create")) == 11
                assert len(env.replies(by_name["Busy"])) > 8
                assert clock.now() > 20.0  # 17 replies in a thread take Teams over 20 s at 27 a minute
                assert env.stats.total("dropped_total") == 0

    run(main())


def test_a_429_from_another_sender_pauses_the_channel_and_everything_arrives() -> None:
    """Another process of the same app has just filled the channel's window
    (7 threads in a second): the sink's call is answered 429 with Retry-After,
    it waits that long, and then the card and its whole story arrive."""

    async def main() -> None:
        clock = ManualClock()
        async with running(FakeTeams(now=clock.now)) as fake:
            async with teams_env(fake=fake, clock=clock) as env:
                await other_sender(fake, CHANNEL, 7)
                task = TaskScript.new("t-429", "rivet", task_name="Paused")
                await env.send(task.started(), task.checkpoint(progress=30.0), task.finished("complete"))
                assert await drive(clock, env.sink.force_flush(30))
                refused = [c for c in fake.calls if c.status == 429]
                assert refused and refused[0].path == "/v3/conversations", "the other sender left room"
                assert env.stats.value("teams_rate_limited_total") >= 1
                paused = next(c for c in fake.calls if c.at > refused[-1].at)
                assert paused.at - refused[-1].at >= 1.0  # Retry-After was kept
                root = env.by_name()["Paused"]
                assert shown(root).startswith("✅ rivet · complete")
                lines = env.lines(root)
                assert "📍 25% reached" in lines and sum(x.startswith("✅ Complete") for x in lines) == 1
                assert env.stats.total("dropped_total") == 0

    run(main())


def test_a_refused_channel_is_counted_and_logged_and_another_channels_tasks_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bot was removed from a route's channel (403
    BotNotInConversationRoster): that task is counted as refused, said once
    in the log, not tried again, and a task of another channel is shown."""

    async def main() -> None:
        async with running(fast_fake()) as fake:
            fake.channel(OTHER).bot_member = False
            async with teams_env(fake=fake, **FAST, **ROUTED) as env:
                lost = TaskScript.new("t-blocked", "rivet", task_name="Nowhere")
                await env.send(lost.started(), lost.checkpoint(progress=50.0), lost.finished("complete"))
                other = TaskScript.new("t-home", "cog", task_name="Home")
                await env.send(other.started(), other.checkpoint(progress=50.0), other.finished("complete"))
                assert await env.sink.force_flush(10)
                assert env.stats.value("dropped_total", reason="teams_refused", sink="teams") >= 1
                assert len([c for c in fake.calls if c.status == 403]) == 1  # not tried again
                said = [r.getMessage() for r in caplog.records if "teams refused" in r.getMessage()]
                assert len(said) == 1 and "BotNotInConversationRoster" in said[0], said
                assert shown(env.by_name()["Home"]).startswith("✅ cog · complete")
                assert "📍 50% reached" in env.lines(env.by_name()["Home"])
                assert not env.roots(OTHER)

    run(main())


def test_a_task_its_channel_refused_is_counted_once_whatever_it_says_later() -> None:
    """After the refusal the task goes on (its later checkpoints, its end):
    the channel is not asked again for each of them, and the task's refusal
    is counted once, not once per event that follows."""

    async def main() -> None:
        async with running(fast_fake()) as fake:
            fake.channel(OTHER).bot_member = False
            async with teams_env(fake=fake, **FAST, **ROUTED) as env:
                lost = TaskScript.new("t-blocked", "rivet", task_name="Nowhere")
                await env.send(lost.started())
                assert await env.sink.force_flush(10)
                refused = env.stats.value("dropped_total", reason="teams_refused", sink="teams")
                assert refused == 1
                for p in (25, 50, 75):
                    await env.send(lost.checkpoint(progress=float(p)))
                    assert await env.sink.force_flush(10)
                await env.send(lost.finished("complete"))
                assert await env.sink.force_flush(10)
                assert len([c for c in fake.calls if c.status == 403]) == 1
                assert env.stats.value("dropped_total", reason="teams_refused", sink="teams") == refused

    run(main())


def test_old_events_replayed_after_the_end_never_move_the_card_back() -> None:
    """A restarted process gets a task's early events again (the exporter's
    retry, a journal's replay) after its card showed the end: the card keeps
    the end and no line is posted twice; a decision on the finished task
    (ids only) adds its reply and leaves the card as it is."""

    async def main() -> None:
        async with running(fast_fake()) as fake:
            store = InMemoryStateStore()
            task = TaskScript.new("task-old", "rivet", task_name="Old news")
            early: list[Event] = [task.started(), task.checkpoint(progress=30.0, message="early")]
            end = task.finished("complete")
            async with teams_env(fake=fake, store=store, **FAST) as env:
                await env.send(*early, end)
                assert await env.sink.force_flush(10)
                [root] = env.roots()
                final_card = card_of(root)
                replies = env.replies(root)
                puts = len(fake.calls_to("PUT", "update"))
            async with teams_env(fake=fake, store=store, **FAST) as env:
                await env.send(*early)
                assert await env.sink.force_flush(10)
                [root] = env.roots()
                assert card_of(root) == final_card
                assert env.replies(root) == replies
                assert len(fake.calls_to("PUT", "update")) == puts  # not even sent again
                ack = Decision("ack-1", "task-old", "acknowledge", "U1", end.time_ns + 1, actor_name="Ada [admin]")
                bare = TaskView(task_id="task-old", trace_id=task.view.trace_id, root_span_id="", agent_id="")
                await env.send(
                    HumanIntervention(event_id="ack-1", time_ns=ack.time_ns, task=bare, decision=ack, known=False)
                )
                assert await env.sink.force_flush(10)
                [root] = env.roots()
                assert card_of(root) == final_card
                now = env.replies(root)
                assert now[: len(replies)] == replies and len(now) == len(replies) + 1
                assert "Ada [admin]" in shown(now[-1])

    run(main())


def test_routes_send_each_agents_tasks_to_its_channel_and_count_what_no_channel_takes() -> None:
    async def main() -> None:
        ops = "19:ops@thread.tacv2"
        async with running(fast_fake()) as fake:
            fake.channel(ops)
            routes: dict[str, Any] = {"teams_routes": f"agent:sprocket={ops}, repo:acme/*={ops}"}
            async with teams_env(fake=fake, **FAST, **routes) as env:
                assert env.sink.health() == (True, "ok")
                tasks = [
                    TaskScript.new("t-ops", "sprocket", task_name="Ops task"),
                    TaskScript.new("t-acme", "rivet", task_name="Acme task", repo="acme/plant"),
                    TaskScript.new("t-home", "rivet", task_name="Home task"),
                ]
                for t in tasks:
                    await env.send(t.started(), t.checkpoint(progress=50.0), t.finished("complete"))
                assert await env.sink.force_flush(10)
                assert sorted(env.by_name(ops)) == ["Acme task", "Ops task"]
                assert list(env.by_name()) == ["Home task"]
                for channel in (ops, CHANNEL):
                    for root in env.roots(channel):
                        assert shown(root).startswith("✅") and "📍 50% reached" in env.lines(root, channel)
            # No default channel: a task no rule matches is not shown, and counted once.
            async with teams_env(fake=fake, teams_channel="", **FAST, **routes) as env:
                assert env.sink.health() == (True, "ok")
                lost = TaskScript.new("t-nowhere", "cog")
                await env.send(lost.started(), lost.checkpoint(progress=10.0), lost.finished("complete"))
                assert await env.sink.force_flush(10)
                assert env.stats.value("dropped_total", reason="teams_unrouted", sink="teams") == 1
                assert len(env.roots()) == 1 and len(env.roots(ops)) == 2

    run(main())


def test_a_status_route_or_a_bad_channel_in_a_route_is_a_clear_configuration_error() -> None:
    """The sink starts, says why it cannot send (health), and counts what
    it was given as not configured; a route-only setup is fine."""

    async def main() -> None:
        cases = {
            "status:error=19:alerts@thread.tacv2": "route by agent or repo",
            "agent:x=ops": "SPANVISOR_TEAMS_ROUTES (agent:x) 'ops' is not a channel id",
            # A thread's id (a message's link) is no channel's: the rule's last "=" ends it.
            "repo:acme/*=19:x@thread.tacv2;messageid=1": "a thread's id is not a channel's",
            "repo:acme/*=General": "SPANVISOR_TEAMS_ROUTES (repo:acme/*) 'General' is not a channel id",
        }
        async with running(fast_fake()) as fake:
            for routes, said in cases.items():
                async with teams_env(fake=fake, teams_routes=routes, **FAST) as env:
                    ok, why = env.sink.health()
                    assert not ok and said in why, (routes, why)
                    task = TaskScript.new("t-conf", "x")
                    await env.send(task.started(), task.finished("complete"))
                    assert env.stats.value("dropped_total", reason="teams_not_configured", sink="teams") == 2
            assert not fake.calls  # nothing was sent, not even for a token

    run(main())


def test_teams_answering_502_503_504_and_412_delays_the_story_and_loses_or_doubles_nothing() -> None:
    """A run of answers Teams says to try again (a gateway's 502/504, 503,
    412 for concurrent operations): each call is sent again with backoff
    until it is taken; the card shows the end and each line is there once."""

    async def main() -> None:
        clock = ManualClock()
        async with running(fast_fake(now=clock.now)) as fake:
            async with teams_env(fake=fake, clock=clock, **FAST) as env:
                task = TaskScript.new("t-flaky", "rivet", task_name="Through failures")
                await env.send(task.started())
                assert await drive(clock, env.sink.force_flush(10))
                fake.fail_next = [503, 502, 504, 503, 412, 502, 503]
                await env.send(*(task.checkpoint(progress=float(p)) for p in (25, 50, 75)))
                await env.send(task.finished("complete"))
                assert await drive(clock, env.sink.force_flush(30))
                assert not fake.fail_next  # every failure was answered
                failed = [c.status for c in fake.calls if c.status >= 400]
                assert sorted(failed) == sorted([503, 502, 504, 503, 412, 502, 503])
                story_once(env, env.roots()[0], ["25%", "50%", "75%"])
                assert env.stats.total("dropped_total") == 0

    run(main())


def test_teams_away_delays_the_story_and_loses_or_doubles_nothing() -> None:
    """The Bot Connector unreachable (connection refused) while a task goes
    on: export returns at once, the calls wait and are tried again with
    backoff, and when it answers again on the same address the card shows
    the end and every line is there once."""

    async def main() -> None:
        clock = ManualClock()
        async with running(AwayTeams(scale=100.0, now=clock.now)) as fake:
            async with teams_env(fake=fake, clock=clock, **FAST) as env:
                task = TaskScript.new("t-away", "rivet", task_name="Through an outage")
                await env.send(task.started())
                assert await drive(clock, env.sink.force_flush(10))
                await fake.away()
                tried = env.stats.total("teams_calls_total")
                await env.send(*(task.checkpoint(progress=float(p)) for p in (25, 50, 75)), task.finished("complete"))
                await drive(clock, until(lambda: env.stats.total("teams_calls_total") >= tried + 3, "tries in vain"))
                assert env.sink.pending()  # nothing could be out yet
                assert len(env.replies(env.roots()[0])) == 0
                await fake.back()
                assert await drive(clock, env.sink.force_flush(30))
                story_once(env, env.roots()[0], ["25%", "50%", "75%"])
                assert env.stats.total("dropped_total") == 0

    run(main())


def test_a_reply_teams_accepts_with_202_and_no_body_is_no_failure() -> None:
    """Teams may answer a message 202 Accepted with no body (no id): the
    reply is there, the task goes on, nothing is counted as refused, and a
    restart replaying every event posts none of them again."""

    async def main() -> None:
        async with running(fast_fake(accepted_empty=True)) as fake:
            store = InMemoryStateStore()
            task = TaskScript.new("t-202", "rivet", task_name="Accepted")
            events: list[Event] = [
                task.started(),
                *(task.checkpoint(progress=float(p)) for p in (25, 50)),
                task.finished("complete"),
            ]
            async with teams_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events[:2])
                assert await env.sink.force_flush(10)
                await env.send(*events[2:])
                assert await env.sink.force_flush(10)
                assert [c.status for c in fake.calls_to("POST", "reply")] == [201] * 3  # 202 on the wire
                assert env.stats.total("dropped_total") == 0
                story_once(env, env.roots()[0], ["25%", "50%"])
                posts = len([c for c in fake.calls if c.method == "POST"])
            async with teams_env(fake=fake, store=store, **FAST) as env:
                await env.send(*events)
                assert await env.sink.force_flush(10)
                assert len([c for c in fake.calls if c.method == "POST"]) == posts
                story_once(env, env.roots()[0], ["25%", "50%"])

    run(main())


def test_shutdown_keeps_to_its_timeout_with_teams_away_and_counts_what_it_leaves() -> None:
    """Teams gone (refusing connections) and Teams hanging (taking them and
    never answering, with a call timeout far past the shutdown's): shutdown
    returns within its timeout and counts what it could not deliver."""

    async def main() -> None:
        for how in ("away", "silent"):
            async with running(AwayTeams(scale=100.0)) as fake:
                async with teams_env(fake=fake, teams_timeout_s=60, **FAST) as env:
                    task = TaskScript.new("t-bye", "rivet")
                    await env.send(task.started())
                    assert await env.sink.force_flush(10)
                    await (fake.away() if how == "away" else fake.silent())
                    await env.send(task.checkpoint(progress=50.0), task.finished("complete"))
                    await until(lambda: env.stats.total("teams_calls_total") >= 2, "a call to Teams under way")
                    loop = asyncio.get_running_loop()
                    began = loop.time()
                    await env.sink.shutdown(1.0)
                    # Its timeout, and three seconds for a loaded machine: the call's own 60 s are cut.
                    assert loop.time() - began < 4.0, how
                    left = env.stats.value("dropped_total", reason="teams_undelivered", sink="teams")
                    assert left >= 1, how

    run(main())


def test_a_new_question_steps_ahead_of_the_replies_waiting_in_its_thread() -> None:
    """A task's thread has used Teams' burst and more replies wait for its
    pace; a question for a person comes: the card showing it (first, right
    under the task's name) is the thread's next call, and the waiting
    replies follow, none lost."""

    async def main() -> None:
        clock = ManualClock()
        async with running(FakeTeams(now=clock.now)) as fake:  # Teams' limits
            async with teams_env(fake=fake, clock=clock) as env:
                task = TaskScript.new("t-ask", "rivet", task_name="Asks")
                await env.send(task.started())
                assert await drive(clock, env.sink.force_flush(10))
                [root] = env.roots()
                await env.send(*(task.artifact(f"file-{n}.txt") for n in range(60)))  # six replies of ten
                # The thread's burst goes (the clock moving on a little, for the app's
                # bucket); then the clock stands still: the next reply waits for the thread's pace.
                await advance_until(clock, lambda: len(env.replies(root)) == THREAD_BURST, "the thread's burst")
                mark = len(fake.calls)
                ask = ApprovalRequest("a-ship", "Ship it?")
                await env.send(task.checkpoint("awaiting_approval", approvals=(ask,)))
                assert await drive(clock, env.sink.force_flush(30))
                after = [c for c in fake.calls[mark:] if c.status < 400]
                assert after[0].method == "PUT", [(c.method, c.path) for c in after]
                lines = texts(card_of(after[0].body))
                assert lines[2] == "✋ Approval needed: Ship it?", lines  # first after who and what
                assert [c.method for c in after[1:]].count("POST") >= 2  # the waiting replies came after it
                shown_lines = env.lines(root)
                files = [x for x in shown_lines if x.startswith("file-")]
                assert files == [f"file-{n}.txt" for n in range(60)]  # each once, in order
                assert shown_lines[-2:] == ["✋ Approval needed", "Ship it?"]
                assert not [c for c in fake.calls if c.status == 429]

    run(main())
