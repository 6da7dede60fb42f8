"""A local fake of the Slack Web API (aiohttp, 127.0.0.1, port 0).

It answers as Slack documents: HTTP 200 with ``{"ok": false, "error": ...}``
for errors, HTTP 429 with ``Retry-After`` and ``{"error": "ratelimited"}``
when rate-limited, real-looking ``ts`` values, Bearer auth (or a ``token``
form field), form-encoded and JSON bodies. Three parts:

- this module: the HTTP server, the scenarios picked by token and the
  per-method rate limits;
- :mod:`.slack_methods`: the Web API methods (``auth.test``,
  ``chat.postMessage``, ``chat.update``, ``chat.delete``,
  ``chat.getPermalink``, ``chat.scheduleMessage``,
  ``chat.deleteScheduledMessage``, ``conversations.history``,
  ``conversations.list``);
- :mod:`.slack_blocks`: what a message may contain (Block Kit per block
  type, attachments, metadata), rejected as Slack rejects it;
- :mod:`.slack_store`: channels by ID, messages, paging and the edit rules
  of ``chat.update``;
- :mod:`.slack_interact`: ``views.open``, ``chat.postEphemeral``, user
  groups, ``response_url`` and the payloads a click sends;
- :mod:`.slack_socket`: ``apps.connections.open`` and the Socket Mode
  WebSocket (envelopes that must be acked);
- :mod:`.slack_agents`: ``agents.sessions.*`` and the stop button's
  ``agent_session_stopped`` event;
- :mod:`.slack_codechannels`: ``agents.conversations.create``, ``archive``
  and ``setProperties`` (code channels; ``xoxb-nocode…`` lacks their scope);
- :mod:`.slack_apps`: ``apps.manifest.validate``, ``create`` and
  ``update`` (app configuration tokens, ``xoxe.xoxp-…``).

Per-method limits: Slack puts ``chat.update`` and ``chat.delete`` in Tier 3,
"50+ per minute" per workspace and method, with short bursts. The fake keeps
a token bucket per token and method (``method_limits``: per minute and
burst) and answers HTTP 429 with ``Retry-After`` when it is empty. The
default is generous (:data:`DEFAULT_METHOD_LIMITS`, 6,000 a minute) so
tests about other things are not slowed; ``FakeSlack.tier3()`` gives the
real figure, 50 a minute. Posts are limited per channel (a token bucket).

Scenarios are picked by token, like python-slack-sdk's
``tests/mock_web_api_server``:

- ``xoxb-<anything>``: a healthy workspace;
- ``xoxb-invalid`` / ``xoxb-revoked``: invalid_auth / token_revoked everywhere;
- ``xoxb-not-in-channel``: posts answer not_in_channel;
- ``xoxb-error-<code>``: every chat.* call answers ``<code>``;
- ``xoxb-ratelimited-<N>s``: chat.* calls answer 429 (``Retry-After`` =
  ``retry_after`` seconds) for N seconds after the token's first call;
- ``xoxb-5xx[-<n>]``: the first n (3) calls answer HTTP 503;
- ``xoxb-fatal-after-post[-<flag>...]``: chat.postMessage stores the message
  and then answers fatal_error. Flags: ``nohistory`` (conversations.history
  answers missing_scope), ``nolist`` (conversations.list answers
  missing_scope), ``busy`` (``busy_messages`` other messages follow ours at
  once, so it is not on the first page of history);
- ``xoxb-slow-<ms>``: every answer waits that long;
- ``xoxb-nohistory``: an app without ``channels:history``
  (conversations.history answers missing_scope);
- ``xapp-<anything>``: an app-level token, good only for
  ``apps.connections.open`` (and the other way round: ``not_allowed_token_type``);
  ``xapp-lose-acks-<n>``: see :mod:`.slack_socket`;
- ``xoxb-nogroups``: the usergroups methods answer missing_scope;
- anything after a ``~`` is ignored (``xoxb-5xx-2~SECRET``), so a test can
  look for a marker in logs.

``hold()`` makes every call wait until ``release()`` (a Slack that is slow
for as long as a test needs, e.g. to keep a sink draining).

Channels ``#archived`` and ``#missing`` answer is_archived and
channel_not_found. Every call is recorded in ``calls``; messages are kept in
``messages`` by channel ID and ts, deleted ones in ``deleted``.

Standalone: ``python -m tests.fakes.slack_api --port 8099`` (then
``SPANVISOR_SLACK_BASE_URL=http://127.0.0.1:8099/api/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .slack_agents import AgentSessions
from .slack_apps import ManifestApps
from .slack_blocks import InvalidBlocks, validate_blocks, validate_metadata
from .slack_codechannels import CodeChannels
from .slack_interact import Interactions
from .slack_methods import TEXT_POST, TEXT_UPDATE, Answer, WebApi, error
from .slack_socket import SocketMode
from .slack_store import Channel, Message, Workspace, channel_id, looks_like_id

__all__ = [
    "TEXT_POST",
    "TEXT_UPDATE",
    "Call",
    "Channel",
    "FakeSlack",
    "InvalidBlocks",
    "Message",
    "channel_id",
    "looks_like_id",
    "validate_blocks",
    "validate_metadata",
]

# (calls per minute, burst) per token and method; see the module docstring.
TIER3 = (50.0, 5)
DEFAULT_METHOD_LIMITS: dict[str, tuple[float, int]] = {"chat.update": (6000.0, 100), "chat.delete": (6000.0, 100)}
JSON_ARGS = ("blocks", "attachments", "metadata", "view")


@dataclass
class Call:
    method: str
    token: str | None
    args: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float  # the fake's clock (time.monotonic unless given one)


def _is_board(m: Message) -> bool:
    return bool(m.metadata) and (m.metadata or {}).get("event_type") == "spanvisor_board"


def _scenario_value(token: str, prefix: str) -> str | None:
    return token[len(prefix) :] if token.startswith(prefix) else None


class FakeSlack:
    def __init__(
        self,
        *,
        retry_after: int = 1,
        channel_burst: int = 4,
        channel_rate: float = 1.0,
        method_limits: dict[str, tuple[float, int]] | None = None,
        filler_channels: int = 250,
        busy_messages: int = 250,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        """``now`` is the clock the rate limits are kept on: a test that runs
        the sink on a faster clock (``tests/taskscript.ScaledClock``)
        gives the fake the same one, so both keep Slack's limits in its time."""
        self.retry_after = retry_after
        self.now = now
        self.method_limits = dict(DEFAULT_METHOD_LIMITS if method_limits is None else method_limits)
        self.workspace = Workspace(filler_channels)
        self.api = WebApi(self.workspace, channel_burst, channel_rate, busy_messages, now)
        self.interactions = Interactions(self.workspace)
        self.code = CodeChannels(self.workspace)
        self.agents = AgentSessions(self.workspace, self.code.of)
        self.apps = ManifestApps()
        self.socket = SocketMode()
        self.calls: list[Call] = []
        self._method_buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._first_seen: dict[str, float] = {}
        self._token_calls: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._open = asyncio.Event()
        self._open.set()

    @classmethod
    def tier3(cls, **kw: Any) -> FakeSlack:
        """chat.update and chat.delete at Slack's Tier 3: 50 a minute per workspace."""
        return cls(method_limits={"chat.update": TIER3, "chat.delete": TIER3}, **kw)

    # --- lifecycle ------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)
        app.router.add_post("/hooks/response/{rid}", self.interactions.handle_response)
        app.router.add_get("/link/", self.socket.handle)
        return app

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/"
        self.interactions.base = self.base_url.removesuffix("/api/")
        self.socket.base_ws = "ws" + self.interactions.base.removeprefix("http")
        return self.base_url

    async def stop(self) -> None:
        await self.socket.close()
        if self._runner:
            await self._runner.cleanup()

    def hold(self) -> None:
        """Calls wait (unanswered) until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    # --- queries for tests ---------------------------------------------

    @property
    def messages(self) -> dict[str, dict[str, Message]]:
        return self.workspace.messages

    @property
    def deleted(self) -> list[Message]:
        return self.workspace.deleted

    @property
    def scheduled(self) -> dict[str, str]:
        """Scheduled messages not yet deleted: id -> channel ID."""
        return self.api.scheduled

    def calls_to(self, method: str, ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (ok is None or c.response.get("ok") is ok)]

    def parents(self, channel: str | None = None) -> list[Message]:
        """Top-level messages of the bot, oldest first (others' chatter and
        channel boards, :meth:`boards`, left out)."""
        return [m for m in self._top(channel) if not _is_board(m)]

    def boards(self, channel: str | None = None) -> list[Message]:
        """The bot's channel boards (metadata ``spanvisor_board``), oldest first."""
        return [m for m in self._top(channel) if _is_board(m)]

    def _top(self, channel: str | None) -> list[Message]:
        out = [
            m
            for ch, msgs in self.messages.items()
            if channel is None or ch == channel_id(channel)
            for m in msgs.values()
            if m.thread_ts is None and m.user is None
        ]
        return sorted(out, key=lambda m: float(m.ts))

    def thread(self, parent: Message) -> list[Message]:
        msgs = self.messages.get(parent.channel, {}).values()
        return sorted((m for m in msgs if m.thread_ts == parent.ts), key=lambda m: float(m.ts))

    # --- HTTP -----------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        await self._open.wait()
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else args.pop("token", None)
        status, body, headers = await self._answer(method, token, args)
        self.calls.append(Call(method, token, args, status, body, self.now()))
        if status >= 500:
            return web.Response(status=status, text="upstream connect error", headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def _args(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        if request.content_type == "application/json":
            try:
                data = await request.json()
            except ValueError:
                return {"__invalid__": True}
            return dict(data) if isinstance(data, dict) else {"__invalid__": True}
        form = await request.post()
        out: dict[str, Any] = {k: str(v) for k, v in form.items()}
        for key in JSON_ARGS:
            if isinstance(out.get(key), str):
                try:
                    out[key] = json.loads(out[key])
                except ValueError:
                    out[key] = "__invalid__"
        return out

    async def _answer(self, method: str, token: str | None, args: dict[str, Any]) -> Answer:
        if not token:
            return error("not_authed")
        # Anything after "~" is not part of the scenario: a test can put a
        # secret-looking marker in the token and look for it in logs.
        full, token = token, token.split("~")[0]
        if method in ManifestApps.METHODS:  # app configuration tokens (xoxe.xoxp-…), nothing else
            return self.apps.call(method, token, args)
        if method == "apps.connections.open" or token.startswith("xapp-"):
            # App-level tokens open Socket Mode connections and do nothing else.
            if method != "apps.connections.open" or not token.startswith("xapp-"):
                return error("not_allowed_token_type")
            return self.socket.open(full)
        if token in {"xoxb-invalid"} or not token.startswith("xox"):
            return error("invalid_auth")
        if token == "xoxb-revoked":
            return error("token_revoked")
        now = self.now()
        self._first_seen.setdefault(full, now)
        n = self._token_calls[full] = self._token_calls.get(full, 0) + 1
        if (ms := _scenario_value(token, "xoxb-slow-")) is not None:
            await asyncio.sleep(int(ms) / 1000)
        if token.startswith("xoxb-5xx"):
            limit = int(token.rpartition("-")[2]) if token.count("-") >= 2 else 3
            if n <= limit:
                return 503, {}, {}
        if method.startswith("chat."):
            secs = _scenario_value(token, "xoxb-ratelimited-")
            if secs is not None and now - self._first_seen[full] < float(secs.rstrip("s")):
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(self.retry_after)}
            if (code := _scenario_value(token, "xoxb-error-")) is not None:
                return error(code)
        if (wait := self._method_limited(full, method)) is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(max(1, math.ceil(wait)))}
        if method in Interactions.METHODS:
            return self.interactions.call(method, token, args)
        if method in AgentSessions.METHODS:
            return self.agents.call(method, token, args)
        if method in CodeChannels.METHODS:
            return self.code.call(method, token, args)
        return self.api.call(method, token, args)

    def _method_limited(self, token: str, method: str) -> float | None:
        """Seconds to wait when the workspace's bucket for this method is empty."""
        limit = self.method_limits.get(method)
        if limit is None:
            return None
        rate, burst = limit[0] / 60.0, float(limit[1])
        now = self.now()
        level, last = self._method_buckets.get((token, method), (burst, now))
        level = min(burst, level + (now - last) * rate)
        if level < 1:
            self._method_buckets[(token, method)] = (level, now)
            return (1 - level) / rate
        self._method_buckets[(token, method)] = (level - 1, now)
        return None


async def _serve(port: int) -> None:
    fake = FakeSlack()
    url = await fake.start(port)
    print(f"fake Slack Web API at {url} (SPANVISOR_SLACK_BASE_URL={url})", flush=True)
    seen = 0
    try:
        while True:
            await asyncio.sleep(0.5)
            for c in fake.calls[seen:]:
                print(f"{c.method} {c.status} ok={c.response.get('ok')} {c.response.get('error', '')}", flush=True)
            seen = len(fake.calls)
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake Slack Web API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
