"""Clicks over Socket Mode: slack_sdk's real aiohttp SocketModeClient, started
by the Slack sink, against the fake's apps.connections.open and WebSocket."""

from __future__ import annotations

import asyncio
import logging

import pytest
from interact_support import Live, live
from slack_support import run, until

from spanvisor_slack import actions as A


async def _connected(env: Live) -> None:
    await until(lambda: env.fake.socket.connections >= 1, 15, "the Socket Mode connection")


def test_an_envelope_reaches_the_decision_and_is_acked(caplog: pytest.LogCaptureFixture) -> None:
    token = "xapp-1-A0SPANV-1-test~APPTOKENSECRET"

    async def go() -> None:
        async with live(http=False, slack_app_token=token) as env:
            await _connected(env)
            assert env.one.sink.admin_routes() == ()  # no signing secret: no HTTP endpoints
            env.ask("S1", "a1")
            parent = await env.awaiting("S1", "a1")
            env_ = await env.fake.socket.send("interactive", env.click(parent, "S1", A.APPROVE, "a1"))
            await until(lambda: env_.acked, 10, "the ack")
            assert env_.acks == [{"envelope_id": env_.envelope_id}] and env_.sent == 1
            await until(env.answers, 10, "the ephemeral answer")
            [d] = await env.one.decisions("S1")
            assert (d.action, d.actor_id, d.source) == ("approve", "U0ALICE", "slack")
            assert env.answers()[0].startswith("✅ Approved")
            opened = env.fake.calls_to("apps.connections.open", ok=True)
            assert opened and opened[0].token == token

    caplog.set_level(logging.DEBUG)
    run(go(), 60)
    assert "APPTOKENSECRET" not in caplog.text


def test_an_unacked_envelope_is_sent_again_and_applied_once() -> None:
    async def go() -> None:
        # The first ack of every envelope is lost: Slack sends it again.
        async with live(http=False, slack_app_token="xapp-lose-acks-1") as env:
            env.fake.socket.ack_timeout_s = 0.5
            await _connected(env)
            env.ask("S2", "a1")
            parent = await env.awaiting("S2", "a1")
            sent = await env.fake.socket.send("interactive", env.click(parent, "S2", A.REJECT, "a1"))
            await until(lambda: sent.acked, 10, "the second ack")
            assert sent.sent == 2 and sent.lost_acks == 1
            await until(env.answers, 10, "the answer")
            await asyncio.sleep(0.5)
            assert [d.action for d in await env.one.decisions("S2")] == ["reject"]
            assert len(env.answers()) == 1
            assert [e.outcome for e in env.one.interventions()] == ["applied"]

    run(go(), 60)


def test_a_slash_command_over_socket_mode_is_answered() -> None:
    async def go() -> None:
        async with live(http=False, slack_app_token="xapp-1-test") as env:
            await _connected(env)
            env.ask("S3", "a1")
            await env.awaiting("S3", "a1")
            sent = await env.fake.socket.send("slash_commands", env.fake.interactions.slash_command("status"))
            await until(lambda: sent.acked, 10, "the ack")
            await until(env.answers, 10, "the answer")
            body = env.fake.interactions.responses[0].body
            assert body["response_type"] == "ephemeral"
            assert "`S3`" in str(body["blocks"])

    run(go(), 60)


def test_socket_mode_and_http_together() -> None:
    async def go() -> None:
        async with live(slack_app_token="xapp-1-test") as env:
            await _connected(env)
            assert [path for _, path, _ in env.one.sink.admin_routes()] == ["/slack/interactions", "/slack/commands"]

    run(go(), 60)
