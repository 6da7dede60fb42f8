"""Channel names and the conversation IDs Slack knows them by.

Configuration and routing rules may name a channel (``#agents``) or give its
ID (``C0123456789``). ``chat.postMessage`` takes either, but the methods that
act on an existing message or read a channel (``chat.update``,
``chat.delete``, ``conversations.history``) take only the ID. The directory
learns each name's ID from every successful post (Slack answers the post
with ``channel``: the ID) and from ``conversations.list`` pages, so the
sink can ask for history after an ambiguous post without asking Slack twice.
"""

from __future__ import annotations

import re
from collections import OrderedDict

# Public channels start with C, private ones (older) with G, DMs with D.
_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
MAX_NAMES = 10_000


def is_channel_id(channel: str) -> bool:
    return bool(_ID.fullmatch(channel))


def _name(channel: str) -> str:
    return channel.lstrip("#")


class ChannelDirectory:
    """name -> ID, bounded; an ID stands for itself."""

    def __init__(self, max_names: int = MAX_NAMES) -> None:
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._max = max_names

    def known(self, channel: str) -> str | None:
        """The channel's ID if it is one or has been learnt; None otherwise."""
        if is_channel_id(channel):
            return channel
        return self._ids.get(_name(channel))

    def learn(self, channel: str, cid: str) -> None:
        if is_channel_id(channel) or not is_channel_id(cid):
            return
        self._ids[_name(channel)] = cid
        self._ids.move_to_end(_name(channel))
        while len(self._ids) > self._max:
            self._ids.popitem(last=False)
