"""``spanvisor check`` for Teams says what works and, when not, what to fix,
never the password."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from spanvisor_teams import TeamsSink
from tests.fakes.teams_api import FakeTeams
from tests.teams.teams_support import CHANNEL, teams_config

T = TypeVar("T")
PEOPLE = '[people.alice]\nteams_user = "8a0d7a4f-0c4e-4a5e-9a3c-2b1f0e6d5c4b"\n'


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _check(fake: FakeTeams, channel: str = CHANNEL, **values: Any) -> list[tuple[str, bool, str]]:
    return await TeamsSink.check(teams_config(fake, channel, **values))


def test_check_passes_for_a_bot_in_its_channel_and_says_why_not_otherwise(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeTeams()
        await fake.start()
        try:
            fake.channel(CHANNEL)
            fake.channel("19:left@thread.tacv2").bot_member = False
            good = await _check(fake)
            assert all(ok for _, ok, _ in good), good
            assert [what for what, _, _ in good] == ["teams token", f"teams channel {CHANNEL}", "teams presses"]
            assert good[-1] == (
                "teams presses",
                True,
                "no buttons yet: SPANVISOR_DECIDERS names nobody by teams_user",
            )
            # A wrong password: the line names the settings to fix, never the password.
            wrong = "not-the-password-0123456789"
            bad = await _check(fake, teams_app_password=wrong)
            assert [(what, ok) for what, ok, _ in bad] == [("teams token", False)], bad
            assert "SPANVISOR_TEAMS_APP_ID" in bad[0][2] and "SPANVISOR_TEAMS_APP_PASSWORD" in bad[0][2], bad
            assert wrong not in str(bad) and fake.app_password not in str(bad)
            # The login service unreachable: its setting is named.
            away = await _check(fake, teams_login_url=f"http://127.0.0.1:{closed_port()}")
            assert [(what, ok) for what, ok, _ in away] == [("teams token", False)], away
            assert "SPANVISOR_TEAMS_LOGIN_URL" in away[0][2], away
            # The bot's app not in the channel's team.
            left = await _check(fake, "19:left@thread.tacv2")
            assert not left[1][1] and "add the bot's app to the channel's team" in left[1][2], left
            # A channel Teams does not know.
            unknown = await _check(fake, "19:nowhere@thread.tacv2")
            assert not unknown[1][1] and "check the channel id" in unknown[1][2], unknown
            # Not a channel id at all: the setting says so, before any call.
            named = await _check(fake, "general")
            assert named == [("teams", False, named[0][2])] and "SPANVISOR_TEAMS_CHANNEL" in named[0][2]
            # Someone named by teams_user: the keys that prove a press must be readable.
            deciders = tmp_path / "d.toml"
            deciders.write_text(PEOPLE)
            named_ok = await TeamsSink.check(teams_config(fake).with_values(deciders_file=str(deciders)))
            assert named_ok[-1][:2] == ("teams presses", True) and "/teams/messages" in named_ok[-1][2], named_ok
            assert "SPANVISOR_ALLOWED_HOSTS" in named_ok[-1][2]
            assert fake.jwks_requests == 1
            proxied = teams_config(fake).with_values(deciders_file=str(deciders), allowed_hosts=("bot.example.com",))
            assert "SPANVISOR_ALLOWED_HOSTS" not in (await TeamsSink.check(proxied))[-1][2]
            gone = f"http://127.0.0.1:{closed_port()}/v1/.well-known/openidconfiguration"
            no_keys = teams_config(fake, teams_openid_url=gone).with_values(deciders_file=str(deciders))
            line = (await TeamsSink.check(no_keys))[-1]
            assert line[:2] == ("teams presses", False) and "signing keys could not be read" in line[2], line
        finally:
            await fake.stop()

    run(main())


def test_spanvisor_check_runs_the_teams_check(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeTeams()
        await fake.start()
        fake.channel(CHANNEL)
        try:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "TELEGRAM_"))},
                "SPANVISOR_TEAMS_APP_ID": fake.app_id,
                "SPANVISOR_TEAMS_APP_PASSWORD": fake.app_password,
                "SPANVISOR_TEAMS_TENANT": fake.tenant,
                "SPANVISOR_TEAMS_CHANNEL": CHANNEL,
                "SPANVISOR_TEAMS_SERVICE_URL": fake.service_url,
                "SPANVISOR_TEAMS_LOGIN_URL": fake.base_url,
                "SPANVISOR_TEAMS_OPENID_URL": fake.openid_url,
                "SPANVISOR_DATA_DIR": str(tmp_path),
            }
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("spanvisor")),
                "check",
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            out = (await proc.communicate())[0].decode()
            assert "teams token" in out and f"teams channel {CHANNEL}" in out, out
            assert "the bot is in the channel's team" in out, out
            assert fake.app_password not in out
        finally:
            await fake.stop()

    run(main())
