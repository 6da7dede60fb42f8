"""``spanvisor check`` for Telegram says what works and, when not, what to fix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from spanvisor_telegram import TelegramSink
from tests.fakes.telegram_api import FakeTelegram
from tests.telegram.telegram_support import DM, GROUP, TOKEN, telegram_config

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _check(fake: FakeTelegram, chat: int | str = GROUP, token: str = TOKEN) -> list[tuple[str, bool, str]]:
    config = telegram_config(fake.base_url, GROUP, token, telegram_chat=str(chat))
    return await TelegramSink.check(config)


def test_check_passes_for_a_bot_in_its_chat_and_says_why_not_otherwise(tmp_path: Any) -> None:
    async def main() -> None:
        fake = FakeTelegram()
        await fake.start()
        try:
            fake.chat(GROUP, "supergroup", forum=True)
            fake.chat(DM, "private")
            fake.chat(-1002, "channel")
            fake.chat(-1003, "group", bot_status="left")
            good = await _check(fake)
            assert all(ok for _, ok, _ in good), good
            assert "a topic of its own" in good[-2][2]
            assert good[-1] == (
                "telegram presses (poll)",
                True,
                "no buttons yet: SPANVISOR_DECIDERS names nobody by telegram_user",
            )
            fake.webhook = {"url": "https://elsewhere.example/hook?key=abc", "secret_token": None}
            hooked = await _check(fake)
            deciders = Path(tmp_path) / "d.toml"
            deciders.write_text("[people.alice]\ntelegram_user = 42\n")
            config = telegram_config(fake.base_url, GROUP, TOKEN).with_values(deciders_file=str(deciders))
            conflict = (await TelegramSink.check(config))[-1]
            assert not conflict[1] and "a webhook is set (https://elsewhere.example)" in conflict[2], conflict
            assert "key=abc" not in str(hooked) + str(conflict)  # an address's query may hold a secret
            fake.webhook = None
            assert all(ok for _, ok, _ in await _check(fake, DM))
            channel = await _check(fake, -1002)
            assert not channel[-2][1] and "admin" in channel[-2][2]
            left = await _check(fake, -1003)
            assert not left[-2][1] and "add the bot to the chat again" in left[-2][2]
            missing = await _check(fake, -1009)
            assert not missing[-2][1] and "add the bot to the chat first" in missing[-2][2]
            bad = await _check(fake, token="700000001:bad")
            assert bad == [("telegram getMe", False, bad[0][2])] and "@BotFather" in bad[0][2]
            assert "bad" not in "".join(text for _, _, text in bad)  # the token never shows
            named = await _check(fake, "not a chat")
            assert not named[0][1] and "SPANVISOR_TELEGRAM_CHAT" in named[0][2]
        finally:
            await fake.stop()

    run(main())


def test_spanvisor_check_runs_the_telegram_check(tmp_path: Any) -> None:
    async def main() -> None:
        fake = FakeTelegram()
        await fake.start()
        fake.chat(GROUP, "supergroup")
        try:
            env = {
                **os.environ,
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "SPANVISOR_TELEGRAM_CHAT": str(GROUP),
                "SPANVISOR_TELEGRAM_BASE_URL": fake.base_url,
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
            assert "telegram getMe" in out and "the bot may post in this supergroup" in out, out
            assert TOKEN.split(":")[1] not in out
        finally:
            await fake.stop()

    run(main())
