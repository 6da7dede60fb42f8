"""What the sink knows of each chat, asked of Telegram once (``getChat``):
its id as Telegram gives it (a press names its chat so; a chat may be
configured as ``@channel`` or an id written another way), and whether it
is a forum (each task then gets a topic of its own)."""

from __future__ import annotations

import asyncio

from .api import BotApi
from .limits import chat_id


class Chats:
    def __init__(self, api: BotApi, topics: bool) -> None:
        self.api, self.topics = api, topics
        self._ids: dict[str, str] = {}  # a chat as configured -> its id as Telegram gives it
        self._forums: dict[str, bool] = {}
        self._asking: dict[str, asyncio.Lock] = {}

    async def resolved(self, chat: str) -> str:
        """The chat's id as Telegram gives it; the chat as given while Telegram
        cannot say (asked again at the next task; the send says what is wrong)."""
        if chat in self._ids:
            return self._ids[chat]
        # Tasks starting together ask once: the first asks, the others wait for its answer.
        async with self._asking.setdefault(chat, asyncio.Lock()):
            if chat not in self._ids:
                await self._ask(chat)
            return self._ids.get(chat, chat)

    async def is_forum(self, chat: str) -> bool:
        """Whether tasks get a topic each in ``chat`` (a resolved id): a forum, with topics on."""
        if not self.topics:
            return False
        if chat not in self._forums:
            await self.resolved(chat)
        return self._forums.get(chat, False)

    async def _ask(self, chat: str) -> None:
        reply = await self.api.call("getChat", {"chat_id": chat_id(chat)})
        if not reply.ok or not isinstance(reply.result, dict) or not isinstance(reply.result.get("id"), int):
            return
        resolved = str(reply.result["id"])
        self._ids[chat] = self._ids[resolved] = resolved
        self._forums[resolved] = bool(reply.result.get("is_forum"))
