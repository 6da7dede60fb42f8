"""The intake's calls to Slack: answers, the modal, user groups.

Separate from the sink's :class:`~.transport.Transport` on purpose: answers
to a person are few, must be quick (a ``trigger_id`` lives 3 s) and must not
queue behind a busy channel's posts. One ``AsyncWebClient`` (bot token) and
one ``AsyncWebhookClient`` per ``response_url``, on one aiohttp session.

A ``response_url`` is only followed to Slack's own hooks host or the host of
the configured Web API base URL (the fake in tests, an enterprise proxy):
never to wherever a payload points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .interact import Where

log = logging.getLogger("spanvisor.slack")
SLACK_HOOKS = "hooks.slack.com"


class InteractApi:
    def __init__(self, token: str | None, base_url: str | None, timeout_s: float) -> None:
        import aiohttp
        from slack_sdk.web.async_client import AsyncWebClient

        self._timeout = max(1, int(timeout_s))
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
        kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
        self.web = AsyncWebClient(token=token, session=self._session, timeout=self._timeout, **kwargs)
        self._hosts = {SLACK_HOOKS}
        if base_url:
            self._hosts.add(urlsplit(base_url).netloc)

    def __repr__(self) -> str:  # the client holds the token: never shown
        return "InteractApi()"

    async def call(self, method: str, *, get: bool = False, **args: Any) -> dict[str, Any] | None:
        """The answer's data when ok; None (logged) on any failure."""
        from slack_sdk.errors import SlackApiError

        try:
            if get:
                resp = await self.web.api_call(method, http_verb="GET", params=args)
            else:
                resp = await self.web.api_call(method, json=args)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            log.warning("Slack %s failed: %s", method, data.get("error") or exc.response.status_code)
            return None
        except Exception as exc:  # connection errors, timeouts: the person gets no answer
            log.warning("Slack %s failed: %s", method, type(exc).__name__)
            return None
        return dict(resp.data) if isinstance(resp.data, dict) else {}

    async def answer(self, where: Where, text: str, blocks: list[dict[str, Any]] | None = None) -> bool:
        """An ephemeral message to the person: through the payload's
        ``response_url`` when there is one we may follow, else chat.postEphemeral."""
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        url = where.response_url
        if url and urlsplit(url).netloc in self._hosts:
            hook = AsyncWebhookClient(url, timeout=self._timeout, session=self._session)
            body: dict[str, Any] = {"response_type": "ephemeral", "replace_original": False, "text": text}
            if blocks:
                body["blocks"] = blocks
            try:
                resp = await hook.send_dict(body)
            except Exception as exc:  # logged; the answer is best effort
                log.warning("Slack response_url failed: %s", type(exc).__name__)
                return False
            if resp.status_code == 200:
                return True
            log.warning("Slack response_url answered HTTP %s", resp.status_code)
            return False
        if url:
            log.warning("Slack payload's response_url is not a Slack host; answering with chat.postEphemeral")
        if where.channel_id is None:
            return False
        args: dict[str, Any] = {"channel": where.channel_id, "user": where.user_id, "text": text}
        if blocks:
            args["blocks"] = blocks
        return await self.call("chat.postEphemeral", **args) is not None

    async def close(self) -> None:
        await self._session.close()


@dataclass
class Approvers:
    """Who may act: ``SPANVISOR_SLACK_APPROVERS``, or a channel's own list
    (``SPANVISOR_SLACK_CHANNEL_APPROVERS``). Empty everywhere: anyone.

    User groups (``S…`` ids, ``@handle``) are read with ``usergroups.list``
    and ``usergroups.users.list`` and cached ``ttl_s``. A group that cannot
    be read allows no one (fail closed) until it can.
    """

    everywhere: tuple[str, ...]
    per_channel: Mapping[str, tuple[str, ...]]
    api: InteractApi | None
    ttl_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _members: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    _handles: tuple[float, dict[str, str]] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.everywhere or self.per_channel)

    def applying(self, where: Where) -> tuple[str, ...]:
        """The list for a click in ``where``'s channel."""
        for key in (where.channel_id, f"#{where.channel_name}" if where.channel_name else None, where.channel_name):
            if key and key in self.per_channel:
                return self.per_channel[key]
        return self.everywhere

    async def allows(self, where: Where) -> tuple[bool, str | None]:
        """(allowed, why not)."""
        who = self.applying(where)
        if not who:
            return True, None
        if where.user_id in who:
            return True, None
        trouble = None
        for entry in who:
            if entry[0] in "UW":
                continue
            gid = entry if entry.startswith("S") else await self._group_id(entry[1:])
            members = await self._group_members(gid) if gid else None
            if members is None:
                trouble = "an approvers group could not be read"
                continue
            if where.user_id in members:
                return True, None
        return False, trouble or "not an approver"

    async def member_of(self, user_id: str, groups: tuple[str, ...]) -> tuple[str, ...]:
        """Which of ``groups`` (user-group handles, or ``S…`` ids) the user is
        in, as Slack says now (cached ``ttl_s``). A group that cannot be read
        is not counted (fail closed): the user is not proven to be in it."""
        found = []
        for name in groups:
            gid = name if name.startswith("S") and name[1:].isalnum() and name.isupper() else await self._group_id(name)
            members = await self._group_members(gid) if gid else None
            if members is None:
                log.warning("Slack user group %r could not be read: its members are not counted", name[:64])
            elif user_id in members:
                found.append(name)
        return tuple(found)

    async def _group_id(self, handle: str) -> str | None:
        now = self.clock()
        if self._handles is None or now - self._handles[0] > self.ttl_s:
            data = await self.api.call("usergroups.list", get=True) if self.api else None
            if data is None:
                return None
            raw = data.get("usergroups")
            groups: list[Any] = raw if isinstance(raw, list) else []
            self._handles = (
                now,
                {str(g.get("handle")): str(g.get("id")) for g in groups if isinstance(g, dict) and g.get("id")},
            )
        return self._handles[1].get(handle)

    async def _group_members(self, gid: str) -> frozenset[str] | None:
        now = self.clock()
        hit = self._members.get(gid)
        if hit is not None and now - hit[0] <= self.ttl_s:
            return hit[1]
        data = await self.api.call("usergroups.users.list", get=True, usergroup=gid) if self.api else None
        if data is None:
            return None
        raw = data.get("users")
        users: list[Any] = raw if isinstance(raw, list) else []
        members = frozenset(str(u) for u in users)
        self._members[gid] = (now, members)
        return members


__all__ = ["Approvers", "InteractApi"]
