"""Each task's thread as a Slack agent session (``SPANVISOR_SLACK_AGENT_SESSIONS``).

A real pipeline with the Slack sink against the fake Slack, which keeps
every status ``agents.sessions.setStatus`` set and builds the
``agent_session_stopped`` deliveries its stop button sends (signed over
HTTP, or as a Socket Mode envelope):

* the session's status follows the task: processing while it works, active
  while it waits for a person, processing again once approved, closed at the
  end, titled with the task's name;
* the stop button cancels the task as the person who pressed it, once
  (Slack's retry of the delivery is the same press), through the control
  log like every cancel; the session leaves ``processing``;
* a press by someone who may not cancel is refused with an ephemeral
  answer, audited as denied, and the session shows ``processing`` again;
* the events route refuses an unsigned delivery and answers Slack's
  ``url_verification`` challenge;
* an app Slack does not take sessions from (not declared as an agent) is
  told once, and its messages go on.
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interact_support import Live, live
from slack_support import run, slack_env, until
from tests.fakes.slack_agents import Session
from tests.fakes.slack_store import Message
from tests.taskscript import TaskScript

from spanvisor.events import Event, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor_slack import actions as A
from spanvisor_slack.sessions import session_status

pytestmark = [pytest.mark.timeout_s(120)]


async def _session(env: Live, parent: Message, status: str) -> Session:
    """The parent's session once its latest status is ``status``."""

    def shows() -> Session | None:
        s = env.fake.agents.of(parent.channel, parent.ts)
        return s if s is not None and s.status == status else None

    await until(shows, 15, f"the session to show {status}")
    found = shows()
    assert found is not None
    return found


async def _parent(env: Live, task_id: str) -> Message:
    await until(lambda: env.parent(task_id) is not None, 15, f"the parent of {task_id}")
    parent = env.parent(task_id)
    assert parent is not None
    return parent


def test_the_session_follows_the_task_from_working_to_closed() -> None:
    async def go() -> None:
        async with live(slack_agent_sessions="on") as env:
            root = env.tracer.start_span("deploy", attributes={cv.TASK_NAME: "deploy the API", cv.TASK_ID: "AS1"})
            parent = await _parent(env, "AS1")
            session = await _session(env, parent, "processing")
            assert session.title == "deploy the API"
            root.add_event(cv.EVENT_APPROVAL_REQUEST, {cv.APPROVAL_ID: "a1", cv.APPROVAL_QUESTION: "Go on?"})
            await _session(env, parent, "active")  # the person's turn: no stop button while nobody works
            sender = env.one.sender
            assert sender is not None
            await sender.interaction(env.click(parent, "AS1", A.APPROVE, "a1"))
            await _session(env, parent, "processing")
            root.end()
            session = await _session(env, parent, "closed")
            assert session.statuses == ["processing", "active", "processing", "closed"]
            [call] = [c for c in env.fake.calls_to("agents.sessions.setStatus") if c.args.get("title")]
            assert call.args["status"] == "processing"  # the title goes with the session's first status only

    run(go(), 90)


def test_slacks_stop_button_cancels_the_task_once_as_the_person_who_pressed_it() -> None:
    async def go() -> None:
        async with live(slack_agent_sessions="on", slack_approvers="U0ALICE") as env:
            root = env.tracer.start_span("migrate", attributes={cv.TASK_NAME: "migrate", cv.TASK_ID: "AS2"})
            env.roots.append(root)
            parent = await _parent(env, "AS2")
            await _session(env, parent, "processing")
            press = env.fake.agents.stop(parent.channel, parent.ts, "U0ALICE")
            sender = env.one.sender
            assert sender is not None
            assert (await sender.event(press)).status == 200
            assert (await sender.event(press, retry=1)).status == 200  # Slack's retry: the same press
            await until(env.one.interventions, 10, "the cancel recorded")
            await _session(env, parent, "suspended")  # stopping: the stop button is gone
            await asyncio.sleep(0.3)
            [d] = await env.one.decisions("AS2")
            assert (d.action, d.actor_id, d.source, d.verified) == ("cancel", "U0ALICE", "slack", True)
            view = await env.one.pipeline.control.task("AS2")
            assert view is not None and view.cancel_requested
            assert [e.outcome for e in env.one.interventions()] == ["applied"]
            assert env.answers() and env.answers()[0].startswith("🛑")

    run(go(), 90)


def test_a_stop_by_someone_who_may_not_cancel_is_refused_and_the_session_shown_again() -> None:
    async def go() -> None:
        async with live(slack_agent_sessions="on", slack_approvers="U0ALICE") as env:
            root = env.tracer.start_span("migrate", attributes={cv.TASK_NAME: "migrate", cv.TASK_ID: "AS3"})
            env.roots.append(root)
            parent = await _parent(env, "AS3")
            session = await _session(env, parent, "processing")
            sender = env.one.sender
            assert sender is not None
            await sender.event(env.fake.agents.stop(parent.channel, parent.ts, "U0MALLORY"))
            await until(env.answers, 10, "the refusal")
            assert env.answers()[0].startswith("🚫 You are not allowed to cancel")
            await until(lambda: len(session.statuses) == 2, 10, "the session's status set again")
            assert session.statuses == ["processing", "processing"]
            await until(env.one.interventions, 10, "the denied intervention")
            [denied] = env.one.interventions()
            assert (denied.outcome, denied.decision.actor_id) == ("denied", "U0MALLORY")
            assert await env.one.decisions("AS3") == []

    run(go(), 90)


def test_a_stop_over_socket_mode_cancels_the_task() -> None:
    async def go() -> None:
        async with live(http=False, slack_app_token="xapp-1-test", slack_agent_sessions="on") as env:
            await until(lambda: env.fake.socket.connections >= 1, 15, "the Socket Mode connection")
            root = env.tracer.start_span("build", attributes={cv.TASK_NAME: "build", cv.TASK_ID: "AS4"})
            env.roots.append(root)
            parent = await _parent(env, "AS4")
            await _session(env, parent, "processing")
            sent = await env.fake.socket.send("events_api", env.fake.agents.stop(parent.channel, parent.ts))
            await until(lambda: sent.acked, 10, "the ack")
            await until(env.one.interventions, 10, "the cancel recorded")
            [d] = await env.one.decisions("AS4")
            assert (d.action, d.actor_id) == ("cancel", "U0ALICE")

    run(go(), 90)


def test_the_events_route_checks_the_signature_and_answers_the_challenge() -> None:
    async def go() -> None:
        async with live(slack_agent_sessions="on") as env:
            sender = env.one.sender
            assert sender is not None
            challenge = {
                "type": "url_verification",
                "token": "x",
                "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            }
            answered = await sender.event(challenge)
            assert answered.status == 200 and '"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"' in answered.text
            assert (await sender.event(challenge, signed=False)).status == 401
            assert (await sender.post("/slack/events", {"not": "json"})).status == 400
            # A stop on a thread that is no session of ours changes nothing.
            stranger = {
                "type": "event_callback",
                "event_id": "Ev1",
                "event": {
                    "type": "agent_session_stopped",
                    "channel": "C0AGENTS",
                    "thread_ts": "1.000001",
                    "user": "U0ALICE",
                },
            }
            assert (await sender.event(stranger)).status == 200
            await asyncio.sleep(0.3)
            assert env.one.interventions() == [] and env.answers() == []

    run(go(), 60)


def test_an_app_slack_takes_no_sessions_from_is_told_once_and_its_messages_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> None:
        async with live(slack_agent_sessions="on", slack_token="xoxb-notagent-1") as env:
            for n in (1, 2):
                root = env.tracer.start_span("t", attributes={cv.TASK_NAME: f"task {n}", cv.TASK_ID: f"AS5-{n}"})
                root.end()
                await _parent(env, f"AS5-{n}")
            await until(lambda: env.fake.calls_to("agents.sessions.setStatus"), 10, "a session asked for")
            await asyncio.sleep(0.5)
            assert len(env.fake.calls_to("agents.sessions.setStatus")) == 1
            assert env.fake.agents.sessions == {}

    caplog.set_level(logging.WARNING, logger="spanvisor.slack")
    run(go(), 60)
    said = [r.getMessage() for r in caplog.records if "refused agent sessions" in r.getMessage()]
    assert len(said) == 1 and "missing_scope" in said[0], said


FAST = {
    "slack_update_interval_s": 0.0,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
    "slack_milestones": "",
    "channel_rate": 100.0,
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.sampled_from(["working", "awaiting_approval", "cancel"]), min_size=1, max_size=5),
    end=st.sampled_from([None, "complete", "error", "cancelled"]),
    order=st.randoms(use_true_random=False),
    batches=st.integers(1, 3),
    replay=st.booleans(),
)
def test_in_any_order_and_with_replays_the_session_shows_what_the_parent_shows(
    steps: list[str], end: str | None, order: random.Random, batches: int, replay: bool
) -> None:
    """Views reordered across batches and sent again: the session's last
    status is the one the parent's final view maps to, and a closed session
    is never set to another status."""
    task = TaskScript.new("prop")
    events: list[Event] = [task.started()]
    for step in steps:
        if step == "cancel":
            events.append(task.checkpoint(cancel_requested=True))
        else:
            events.append(task.checkpoint(status=step))  # type: ignore[arg-type]
    if end is not None:
        events.append(task.finished(end))
    shuffled = list(events)
    order.shuffle(shuffled)
    if replay:
        shuffled += events[: len(events) // 2 + 1]
    cut = max(1, len(shuffled) // batches)
    parts = [shuffled[i : i + cut] for i in range(0, len(shuffled), cut)]

    async def go() -> None:
        async with slack_env(slack_agent_sessions="on", **FAST) as env:
            for part in parts:
                await env.send(*part)
                await asyncio.sleep(0)
            assert await env.sink.force_flush(20)
            (parent,) = env.fake.parents()
            session = env.fake.agents.of(parent.channel, parent.ts)
            assert session is not None
            shown = parent.metadata or {}
            final = max(events, key=lambda e: (isinstance(e, TaskFinished), e.task.seq)).task
            assert session.status == session_status(final), (session.statuses, final.status, shown)
            if "closed" in session.statuses:
                assert session.statuses[session.statuses.index("closed") :] == ["closed"] * (
                    len(session.statuses) - session.statuses.index("closed")
                ), session.statuses

    run(go(), 60)
