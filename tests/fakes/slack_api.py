"""A local fake of the Slack Web API (aiohttp, 127.0.0.1, port 0).

It answers as Slack documents: HTTP 200 with ``{"ok": false, "error": ...}``
for errors, HTTP 429 with ``Retry-After`` and ``{"error": "ratelimited"}``
when rate-limited, real-looking ``ts`` values, Bearer auth (or a ``token``
form field), form-encoded and JSON bodies. It validates Block Kit as Slack
would reject it (``invalid_blocks``, ``msg_too_long``,
``msg_blocks_too_long``) and limits posts per channel (a token bucket).
``chat.update`` without ``blocks`` removes the old blocks, as Slack does.

Per-method limits: Slack puts ``chat.update`` and ``chat.delete`` in Tier 3,
"50+ per minute" per workspace and method, with short bursts. The fake keeps
a token bucket per token and method (``method_limits``: per minute and
burst) and answers HTTP 429 with ``Retry-After`` when it is empty. The
default is generous (:data:`DEFAULT_METHOD_LIMITS`, 6,000 a minute) so
tests about other things are not slowed; ``FakeSlack.tier3()`` gives the
real figure, 50 a minute.

Scenarios are picked by token, like python-slack-sdk's
``tests/mock_web_api_server``:

- ``xoxb-<anything>``: a healthy workspace;
- ``xoxb-invalid`` / ``xoxb-revoked``: invalid_auth / token_revoked everywhere;
- ``xoxb-not-in-channel``: posts answer not_in_channel;
- ``xoxb-error-<code>``: every chat.* call answers ``<code>``;
- ``xoxb-ratelimited-<N>s``: chat.* calls answer 429 (``Retry-After`` =
  ``retry_after`` seconds) for N seconds after the token's first call;
- ``xoxb-5xx[-<n>]``: the first n (3) calls answer HTTP 503;
- ``xoxb-fatal-after-post[-nohistory]``: chat.postMessage stores the message
  and then answers fatal_error (``-nohistory``: conversations.history answers
  missing_scope, so a client cannot find it);
- ``xoxb-slow-<ms>``: every answer waits that long;
- ``chat.delete`` removes a message (``message_not_found`` when it is gone);
  deleted messages are kept in ``deleted``;
- anything after a ``~`` is ignored (``xoxb-5xx-2~SECRET``), so a test can
  look for a marker in logs.

Channels ``#archived`` and ``#missing`` answer is_archived and
channel_not_found. Every call is recorded in ``calls``; messages are kept in
``messages`` by channel id and ts.

Standalone: ``python -m tests.fakes.slack_api --port 8099`` (then
``SPANVISOR_SLACK_BASE_URL=http://127.0.0.1:8099/api/``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_BLOCKS = 50
TOTAL_BLOCKS_JSON = 13_000
TEXT_POST = 40_000
TEXT_UPDATE = 4_000
# (calls per minute, burst) per token and method; see the module docstring.
TIER3 = (50.0, 5)
DEFAULT_METHOD_LIMITS: dict[str, tuple[float, int]] = {"chat.update": (6000.0, 100), "chat.delete": (6000.0, 100)}


@dataclass
class Call:
    method: str
    token: str | None
    args: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float  # time.monotonic()


@dataclass
class Message:
    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    thread_ts: str | None = None
    reply_broadcast: bool = False
    metadata: dict[str, Any] | None = None
    edits: int = 0
    args: dict[str, Any] = field(default_factory=dict)


class InvalidBlocks(Exception):
    def __init__(self, error: str, why: str) -> None:
        super().__init__(why)
        self.error = error


def channel_id(name: str) -> str:
    if name[:1] in {"C", "G", "D"} and name[1:].isalnum() and name.upper() == name:
        return name
    return "C" + hashlib.md5(name.lstrip("#").encode()).hexdigest()[:9].upper()


def _text_obj(obj: Any, limit: int, kinds: tuple[str, ...] = ("plain_text", "mrkdwn")) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        raise InvalidBlocks("invalid_blocks", f"text object must be one of {kinds}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise InvalidBlocks("invalid_blocks", "text must be a non-empty string")
    if len(text) > limit:
        raise InvalidBlocks("invalid_blocks", f"must be less than {limit + 1} characters")


def _element(el: Any, action_ids: set[str]) -> None:
    if not isinstance(el, dict):
        raise InvalidBlocks("invalid_blocks", "element must be an object")
    if el.get("type") == "button":
        _text_obj(el.get("text"), 75, ("plain_text",))
        url = el.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > 3000):
            raise InvalidBlocks("invalid_blocks", "url must be less than 3001 characters")
        aid = el.get("action_id")
        if aid is not None:
            if len(str(aid)) > 255 or aid in action_ids:
                raise InvalidBlocks("invalid_blocks", "action_id too long or not unique")
            action_ids.add(str(aid))
        if len(str(el.get("value", ""))) > 2000:
            raise InvalidBlocks("invalid_blocks", "value too long")
    elif el.get("type") in {"mrkdwn", "plain_text"}:
        _text_obj(el, 3000)
    elif el.get("type") != "image":
        raise InvalidBlocks("invalid_blocks", f"unsupported element {el.get('type')!r}")


def validate_blocks(blocks: Any) -> None:
    if not isinstance(blocks, list):
        raise InvalidBlocks("invalid_blocks_format", "blocks must be an array")
    if len(blocks) > MAX_BLOCKS:
        raise InvalidBlocks("invalid_blocks", f"no more than {MAX_BLOCKS} items allowed")
    ids: set[str] = set()
    action_ids: set[str] = set()
    for b in blocks:
        if not isinstance(b, dict):
            raise InvalidBlocks("invalid_blocks", "block must be an object")
        bid = b.get("block_id")
        if bid is not None:
            if not isinstance(bid, str) or len(bid) > 255 or bid in ids:
                raise InvalidBlocks("invalid_blocks", "block_id too long or not unique")
            ids.add(bid)
        kind = b.get("type")
        if kind == "header":
            _text_obj(b.get("text"), 150, ("plain_text",))
        elif kind == "section":
            if "text" not in b and "fields" not in b:
                raise InvalidBlocks("invalid_blocks", "section needs text or fields")
            if "text" in b:
                _text_obj(b["text"], 3000)
            fields = b.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                raise InvalidBlocks("invalid_blocks", "no more than 10 fields")
            for f in fields:
                _text_obj(f, 2000)
        elif kind == "context":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 10:
                raise InvalidBlocks("invalid_blocks", "context needs 1 to 10 elements")
            for el in els:
                _element(el, action_ids)
        elif kind == "actions":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 25:
                raise InvalidBlocks("invalid_blocks", "actions needs 1 to 25 elements")
            for el in els:
                _element(el, action_ids)
        elif kind not in {"divider", "rich_text", "image"}:
            raise InvalidBlocks("invalid_blocks", f"unknown block type {kind!r}")
    if len(json.dumps(blocks, ensure_ascii=False)) > TOTAL_BLOCKS_JSON:
        raise InvalidBlocks("msg_blocks_too_long", "blocks are too long")


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
    ) -> None:
        self.retry_after = retry_after
        self.channel_burst, self.channel_rate = channel_burst, channel_rate
        self.method_limits = dict(DEFAULT_METHOD_LIMITS if method_limits is None else method_limits)
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, Message]] = {}
        self.deleted: list[Message] = []
        self._method_buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._seq = itertools.count(1)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._first_seen: dict[str, float] = {}
        self._token_calls: dict[str, int] = {}
        self._scheduled: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @classmethod
    def tier3(cls, **kw: Any) -> FakeSlack:
        """chat.update and chat.delete at Slack's Tier 3: 50 a minute per workspace."""
        return cls(method_limits={"chat.update": TIER3, "chat.delete": TIER3}, **kw)

    # --- lifecycle ------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)
        return app

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/"
        return self.base_url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    # --- queries for tests ---------------------------------------------

    def calls_to(self, method: str, ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (ok is None or c.response.get("ok") is ok)]

    def parents(self, channel: str | None = None) -> list[Message]:
        out = [
            m
            for ch, msgs in self.messages.items()
            if channel is None or ch == channel_id(channel)
            for m in msgs.values()
            if m.thread_ts is None
        ]
        return sorted(out, key=lambda m: float(m.ts))

    def thread(self, parent: Message) -> list[Message]:
        msgs = self.messages.get(parent.channel, {}).values()
        return sorted((m for m in msgs if m.thread_ts == parent.ts), key=lambda m: float(m.ts))

    # --- the API --------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else args.pop("token", None)
        status, body, headers = await self._answer(method, token, args)
        self.calls.append(Call(method, token, args, status, body, time.monotonic()))
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
        for key in ("blocks", "attachments", "metadata"):
            if isinstance(out.get(key), str):
                try:
                    out[key] = json.loads(out[key])
                except ValueError:
                    out[key] = "__invalid__"
        return out

    async def _answer(
        self, method: str, token: str | None, args: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        # Anything after "~" is not part of the scenario: a test can put a
        # secret-looking marker in the token and look for it in logs.
        full, token = token, token.split("~")[0]
        if token in {"xoxb-invalid"} or not token.startswith("xox"):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if token == "xoxb-revoked":
            return 200, {"ok": False, "error": "token_revoked"}, {}
        now = time.monotonic()
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
                return 200, {"ok": False, "error": code}, {}
        if (wait := self._method_limited(full, method)) is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(max(1, math.ceil(wait)))}
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        result: tuple[int, dict[str, Any], dict[str, str]] = handler(token, args)
        return result

    def _m_auth_test(self, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        return (
            200,
            {
                "ok": True,
                "url": "https://fake-workspace.slack.com/",
                "team": "Fake Workspace",
                "user": "spanvisor",
                "team_id": "T0FAKE",
                "user_id": "U0SPANV",
                "bot_id": "B0SPANV",
            },
            {},
        )

    def _channel_error(self, token: str, channel: Any) -> str | None:
        if not isinstance(channel, str) or not channel or channel.lstrip("#") == "missing":
            return "channel_not_found"
        if channel.lstrip("#") == "archived":
            return "is_archived"
        if token == "xoxb-not-in-channel":
            return "not_in_channel"
        return None

    def _check_message(self, args: dict[str, Any], text_limit: int) -> str | None:
        if "__invalid__" in args or args.get("blocks") == "__invalid__":
            return "invalid_arguments"
        if args.get("link_names") not in (None, False, "0", "false") or args.get("parse") == "full":
            return "invalid_arguments"  # never acceptable for agent text; flags a client bug
        text, blocks, attachments = args.get("text"), args.get("blocks"), args.get("attachments")
        if not text and not blocks and not attachments:
            return "no_text"
        if text is not None and len(str(text)) > text_limit:
            return "msg_too_long"
        try:
            if blocks is not None:
                validate_blocks(blocks)
            if attachments is not None:
                if not isinstance(attachments, list) or len(attachments) > 100:
                    return "invalid_attachments"
                for a in attachments:
                    if not isinstance(a, dict):
                        return "invalid_attachments"
                    validate_blocks(a.get("blocks", []))
        except InvalidBlocks as exc:
            return exc.error
        return None

    def _rate_limited(self, channel: str) -> float | None:
        level, last = self._buckets.get(channel, (float(self.channel_burst), time.monotonic()))
        now = time.monotonic()
        level = min(float(self.channel_burst), level + (now - last) * self.channel_rate)
        if level < 1:
            self._buckets[channel] = (level, now)
            return (1 - level) / self.channel_rate
        self._buckets[channel] = (level - 1, now)
        return None

    def _method_limited(self, token: str, method: str) -> float | None:
        """Seconds to wait when the workspace's bucket for this method is empty."""
        limit = self.method_limits.get(method)
        if limit is None:
            return None
        rate, burst = limit[0] / 60.0, float(limit[1])
        now = time.monotonic()
        level, last = self._method_buckets.get((token, method), (burst, now))
        level = min(burst, level + (now - last) * rate)
        if level < 1:
            self._method_buckets[(token, method)] = (level, now)
            return (1 - level) / rate
        self._method_buckets[(token, method)] = (level - 1, now)
        return None

    def _new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._seq):06d}"

    def _m_chat_postMessage(self, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if err := self._channel_error(token, args.get("channel")) or self._check_message(args, TEXT_POST):
            return 200, {"ok": False, "error": err}, {}
        ch = channel_id(args["channel"])
        if (wait := self._rate_limited(ch)) is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(max(1, math.ceil(wait)))}
        thread_ts = args.get("thread_ts")
        if thread_ts is not None and str(thread_ts) not in self.messages.get(ch, {}):
            return 200, {"ok": False, "error": "thread_not_found"}, {}
        ts = self._new_ts()
        meta = args.get("metadata") if isinstance(args.get("metadata"), dict) else None
        msg = Message(
            ch,
            ts,
            args.get("text"),
            list(args.get("blocks") or []),
            list(args.get("attachments") or []),
            str(thread_ts) if thread_ts else None,
            args.get("reply_broadcast") in (True, "1", "true"),
            meta,
            0,
            args,
        )
        self.messages.setdefault(ch, {})[ts] = msg
        if token.startswith("xoxb-fatal-after-post"):
            return 200, {"ok": False, "error": "fatal_error"}, {}
        return 200, {"ok": True, "channel": ch, "ts": ts, "message": {"text": msg.text, "ts": ts}}, {}

    def _m_chat_update(self, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        ch = args.get("channel")
        if not isinstance(ch, str) or ch != channel_id(ch):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if err := self._channel_error(token, ch) if token != "xoxb-not-in-channel" else None:
            return 200, {"ok": False, "error": err}, {}
        msg = self.messages.get(ch, {}).get(str(args.get("ts")))
        if msg is None:
            return 200, {"ok": False, "error": "message_not_found"}, {}
        if err := self._check_message(args, TEXT_UPDATE):
            return 200, {"ok": False, "error": err}, {}
        msg.text = args.get("text")
        # As Slack does: an update without blocks/attachments removes them.
        msg.blocks = list(args.get("blocks") or [])
        msg.attachments = list(args.get("attachments") or [])
        msg.edits += 1
        msg.args = args
        return 200, {"ok": True, "channel": ch, "ts": msg.ts, "text": msg.text}, {}

    def _m_chat_delete(self, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        ch = str(args.get("channel"))
        msgs = self.messages.get(ch, {})
        msg = msgs.get(str(args.get("ts")))
        if msg is None:
            return 200, {"ok": False, "error": "message_not_found"}, {}
        del msgs[msg.ts]
        self.deleted.append(msg)
        return 200, {"ok": True, "channel": ch, "ts": msg.ts}, {}

    def _m_chat_getPermalink(self, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        ch, ts = str(args.get("channel")), str(args.get("message_ts"))
        if ts not in self.messages.get(ch, {}):
            return 200, {"ok": False, "error": "message_not_found"}, {}
        link = f"https://fake-workspace.slack.com/archives/{ch}/p{ts.replace('.', '')}"
        return 200, {"ok": True, "channel": ch, "permalink": link}, {}

    def _m_conversations_history(self, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if token.endswith("-nohistory"):
            return 200, {"ok": False, "error": "missing_scope", "needed": "channels:history"}, {}
        if err := self._channel_error(token, args.get("channel")):
            return 200, {"ok": False, "error": err}, {}
        ch = channel_id(str(args["channel"]))
        oldest = float(args.get("oldest") or 0)
        with_meta = args.get("include_all_metadata") in (True, "1", "true")
        msgs = [m for m in self.messages.get(ch, {}).values() if m.thread_ts is None and float(m.ts) >= oldest]
        out = [
            {
                "type": "message",
                "ts": m.ts,
                "text": m.text,
                **({"metadata": m.metadata} if with_meta and m.metadata else {}),
            }
            for m in sorted(msgs, key=lambda m: -float(m.ts))
        ][: int(args.get("limit") or 100)]
        return 200, {"ok": True, "messages": out, "has_more": False, "channel_id": ch}, {}

    def _m_chat_scheduleMessage(self, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if err := self._channel_error(token, args.get("channel")) or self._check_message(args, TEXT_POST):
            return 200, {"ok": False, "error": err}, {}
        post_at = int(float(args.get("post_at") or 0))
        if post_at <= time.time():
            return 200, {"ok": False, "error": "time_in_past"}, {}
        if post_at > time.time() + 120 * 86_400:
            return 200, {"ok": False, "error": "time_too_far"}, {}
        sid = f"Q{next(self._seq):08d}"
        ch = channel_id(str(args["channel"]))
        self._scheduled[sid] = ch
        return 200, {"ok": True, "channel": ch, "scheduled_message_id": sid, "post_at": post_at}, {}

    def _m_chat_deleteScheduledMessage(
        self, token: str, args: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        sid = str(args.get("scheduled_message_id"))
        if self._scheduled.get(sid) != args.get("channel"):
            return 200, {"ok": False, "error": "invalid_scheduled_message_id"}, {}
        del self._scheduled[sid]
        return 200, {"ok": True}, {}


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
