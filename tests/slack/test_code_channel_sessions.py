"""A coding session in a code channel of its own, with agent sessions on:
the channel is the session (Slack Code: ``agents.sessions.setStatus``
without ``thread_ts``), not the parent's thread.

A real pipeline with the Slack sink against the fake Slack:

* the channel's session status follows the task (processing while it
  works, suspended once a cancel is asked), the thread gets no session of
  its own, and the session is closed once at the end, before the archive;
* the channel's own stop button cancels the task as the person who pressed
  it, once; a press by someone who may not cancel is refused, and the
  channel's session shows ``processing`` again.
"""

from __future__ import annotations

import pytest
from interact_support import Live, live
from slack_support import run, until
from tests.fakes.slack_codechannels import CodeChannel

from spanvisor.spans import conventions as cv

pytestmark = [pytest.mark.timeout_s(120)]

ON = {
    "slack_agent_sessions": "on",
    "slack_code_channels": "on",
    "slack_approvers": "U0ALICE",
    "slack_rate_limits": "agents.conversations.create=0, agents.conversations.setProperties=0, "
    "agents.sessions.setStatus=0, agents.conversations.setView=0, agents.conversations.archive=0",
}


async def _code(env: Live, status: str) -> CodeChannel:
    """The one code channel, once its session's latest status is ``status``."""

    def shows() -> CodeChannel | None:
        found = list(env.fake.code.channels.values())
        return found[0] if len(found) == 1 and found[0].statuses[-1:] == [status] else None

    await until(shows, 15, f"the code channel's session to show {status}")
    code = shows()
    assert code is not None
    return code


def _start(env: Live, task_id: str) -> None:
    attrs = {cv.TASK_NAME: "fix the login bug", cv.TASK_ID: task_id, cv.AGENT_ID: "claude-code"}
    env.roots.append(env.tracer.start_span("claude-code session", attributes=attrs))


def test_the_code_channel_is_the_session_and_its_stop_button_cancels_the_task() -> None:
    async def go() -> None:
        async with live(**ON) as env:
            _start(env, "CS1")
            code = await _code(env, "processing")
            assert env.fake.agents.sessions == {}  # no thread session beside the channel's
            press = env.fake.agents.stop_channel(code.id, "U0ALICE")
            assert "thread_ts" not in press["event"]
            sender = env.one.sender
            assert sender is not None
            assert (await sender.event(press)).status == 200
            assert (await sender.event(press, retry=1)).status == 200  # Slack's retry: the same press
            await until(env.one.interventions, 10, "the cancel recorded")
            await _code(env, "suspended")  # stopping: the stop button is gone
            [d] = await env.one.decisions("CS1")
            assert (d.action, d.actor_id, d.source, d.verified) == ("cancel", "U0ALICE", "slack", True)
            assert [e.outcome for e in env.one.interventions()] == ["applied"]
            env.roots.pop().end()
            await until(lambda: code.archived, 40, "the channel archived")  # 10 s after its last event
            assert code.statuses.count("closed") == 1 and code.statuses[-1] == "closed"  # closed once
            assert env.fake.agents.sessions == {}

    run(go(), 90)


def test_a_stop_by_someone_who_may_not_cancel_is_refused_and_the_channel_shown_again() -> None:
    async def go() -> None:
        async with live(**ON) as env:
            _start(env, "CS2")
            code = await _code(env, "processing")
            sender = env.one.sender
            assert sender is not None
            await sender.event(env.fake.agents.stop_channel(code.id, "U0MALLORY"))
            await until(env.answers, 10, "the refusal")
            assert env.answers()[0].startswith("🚫 You are not allowed to cancel")
            await until(lambda: code.statuses == ["processing", "processing"], 10, "the status set again")
            await until(env.one.interventions, 10, "the denied intervention")
            [denied] = env.one.interventions()
            assert (denied.outcome, denied.decision.actor_id) == ("denied", "U0MALLORY")
            assert await env.one.decisions("CS2") == []

    run(go(), 90)
