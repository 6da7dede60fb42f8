"""Clicks over Socket Mode: slack_sdk's real aiohttp SocketModeClient, started
by the Slack sink, against the fake's apps.connections.open and WebSocket."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from interact_support import Live, live
from slack_support import run, until
from tests.fakes.slack_api import FakeSlack

from spanvisor_slack import actions as A
from spanvisor_slack.socketmode import SocketIntake


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
            # The intervention reaches the sinks after the answer is sent; wait for it, then
            # give a doubled one the same time to show.
            await until(env.one.interventions, 10, "the HumanIntervention")
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


class Received:
    """Where the envelopes' payloads go (the intake's one method)."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, Mapping[str, Any]]] = []

    def submit(self, kind: str, payload: Mapping[str, Any]) -> None:
        self.payloads.append((kind, payload))


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def _port(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None
    return port


def test_slack_away_and_back_logs_one_line_each_not_a_flood(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        fake = FakeSlack()
        base = await fake.start()
        received = Received()
        # A short ping interval: the client retries every 0.2 s while Slack is away.
        token = "xapp-1-A0SPANV-1-test~APPTOKENSECRET"
        intake = SocketIntake(token, base, received, ping_interval_s=0.2)  # type: ignore[arg-type]
        await intake.start()
        try:
            await until(lambda: _lines(caplog, "Slack Socket Mode connected"), 15, "connected")
            await fake.stop()
            await until(lambda: _lines(caplog, "connection lost"), 15, "the drop line")
            dropped_at = len(caplog.records)
            # Let the client fail to reconnect many times.
            await until(lambda: intake.noise.suppressed >= 5, 30, "reconnect attempts")
            during = caplog.records[dropped_at:]
            await fake.start(_port(base))
            await until(lambda: _lines(caplog, "connection is back"), 30, "the back line")
            assert len(_lines(caplog, "connection lost")) == 1
            [back] = _lines(caplog, "connection is back")
            assert back.levelname == "WARNING" and "reconnect errors not logged" in back.getMessage()
            # While away: at most the first error, and no reconnect chatter.
            noisy = [r for r in during if r.name == "spanvisor.slack.socket"]
            assert len([r for r in noisy if r.levelno >= logging.WARNING]) <= 1, [r.getMessage() for r in noisy]
            assert not [r for r in noisy if r.levelno < logging.WARNING]
            assert len([r for r in caplog.records if r.exc_info]) <= 1
            # And it works again.
            sent = await fake.socket.send("interactive", {"type": "block_actions"})
            await until(lambda: sent.acked and received.payloads, 10, "the envelope after the restart")
        finally:
            await intake.close()
            await fake.stop()

    run(go(), 90)
    assert "APPTOKENSECRET" not in caplog.text


def test_slack_away_at_start_shows_the_first_traceback_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def go() -> None:
        with socket.socket() as s:  # a loopback port nobody listens on (yet)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        intake = SocketIntake(
            "xapp-1-test",
            f"http://127.0.0.1:{port}/api/",
            Received(),  # type: ignore[arg-type]
            ping_interval_s=0.2,
        )
        fake = FakeSlack()
        await intake.start()
        try:
            await until(lambda: intake.noise.suppressed >= 3, 30, "failed connection attempts")
            await fake.start(port)
            await until(lambda: _lines(caplog, "Slack Socket Mode connected after"), 30, "connected")
            # The first failure is logged as slack_sdk logs it (a real error
            # looks like this too; which of its records comes first, the Web
            # API client's or the Socket Mode client's, depends on timing), the
            # repeats only as a count: never a flood of tracebacks.
            tracebacks = [r for r in caplog.records if r.exc_info]
            assert len(tracebacks) <= 1 and all(r.name == "spanvisor.slack.socket" for r in tracebacks)
            first = [r for r in caplog.records if r.name == "spanvisor.slack.socket" and r.levelno >= logging.WARNING]
            assert first, "the first failure was logged"
            assert "reconnect errors not logged" in _lines(caplog, "connected after")[0].getMessage()
            assert not _lines(caplog, "connection lost") and not _lines(caplog, "is back")
        finally:
            await intake.close()
            await fake.stop()

    run(go(), 90)


def test_a_websocket_url_that_stopped_working_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    """slack_sdk retries the URL it holds until it connects; URLs are single
    use, so a handshake that fails once would keep it away for ever. Down
    long enough, the watcher makes it ask apps.connections.open for a new one."""
    caplog.set_level(logging.INFO)

    async def go() -> None:
        fake = FakeSlack()
        base = await fake.start()
        received = Received()
        token = "xapp-refuse-1-A0SPANV-test~APPTOKENSECRET"  # the first handshake fails, its ticket spent
        intake = SocketIntake(token, base, received, ping_interval_s=0.2, fresh_url_s=1.0)  # type: ignore[arg-type]
        await intake.start()
        try:
            await until(lambda: _lines(caplog, "Slack Socket Mode connected"), 20, "connected with a new URL")
            assert fake.socket.refused == 1
            sent = await fake.socket.send("interactive", {"type": "block_actions"})
            await until(lambda: sent.acked and received.payloads, 10, "an envelope on the new connection")
        finally:
            await intake.close()
            await fake.stop()

    run(go(), 60)
    assert "APPTOKENSECRET" not in caplog.text
