"""A local fake of the Telegram Bot API (aiohttp, 127.0.0.1, port 0).

It answers as the Bot API documents (https://core.telegram.org/bots/api):
``/bot<token>/<method>`` by GET or POST, arguments in the query string, a
form or a JSON body; ``{"ok": true, "result": ...}``, or ``{"ok": false,
"error_code": N, "description": "..."}`` with HTTP status N, and for a rate
limit HTTP 429 with ``parameters.retry_after`` (seconds). What a chat sink
and its intake need (issue 69):

- ``getMe``, ``getChat``, ``getChatMember`` (the bot's own place); ``sendMessage`` (``reply_parameters`` or
  ``reply_to_message_id``, ``message_thread_id`` in a forum chat,
  ``parse_mode`` HTML checked for balanced tags, an ``inline_keyboard``
  whose ``callback_data`` must be 1 to 64 bytes); ``editMessageText`` (a
  message the bot sent, "message is not modified" for the same text and
  keyboard); ``answerCallbackQuery`` (once, and only for a query the fake
  made); ``createForumTopic`` in a forum chat;
- updates: ``getUpdates`` (``offset`` confirms what came before it,
  ``timeout`` long-polls, a second poll at once ends the first with 409,
  as does polling while a webhook is set) or a webhook (``setWebhook``
  with ``secret_token``, sent back as ``X-Telegram-Bot-Api-Secret-Token``
  on every POST of an update; ``deleteWebhook``; ``getWebhookInfo``).
  :meth:`FakeTelegram.press` and :meth:`FakeTelegram.say` make the
  updates a person's click or message would.

Limits, kept as the FAQ gives them and enforced, not learnt: text of 1 to
4,096 characters after entity parsing (in UTF-16 code units, as Telegram
counts them; a message keeps its parsed text, as Telegram returns it); per chat about one message a
second (a token bucket with a burst of ``chat_burst``), in a group at
most 20 in any minute (a sliding window), and 30 a second in all (a
bucket), on the ``now`` clock a test may give; over a limit HTTP 429 ``Too Many Requests: retry after N``. An edit
counts against its chat's limits as a message does.

Scenarios by token (``<bot id>:<secret>``): ``bad`` as the secret is 401
Unauthorized everywhere; a chat id in ``blocked`` is 403 ("bot was blocked
by the user"); an unknown chat is 400 "chat not found" (chats are made by
:meth:`FakeTelegram.chat`).
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TAG = re.compile(r"<(/?)([a-zA-Z-]+)(?:\s[^>]*)?>")
_HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler", "span"}
_HTML_TAGS |= {"blockquote", "tg-emoji"}


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


@dataclass
class Chat:
    id: int
    type: str  # private, group, supergroup, channel
    is_forum: bool = False
    # The bot's place in the chat (getChatMember): member, administrator, left, kicked.
    bot_status: str = "member"
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    topics: dict[int, str] = field(default_factory=dict)


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float


class _Bucket:
    """A token bucket: ``rate`` a second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def refill(self, now: float) -> float:
        """The tokens there now."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTelegram:
    def __init__(
        self,
        *,
        chat_burst: float = 3,
        chat_per_second: float = 1,
        group_per_minute: float = 20,
        global_per_second: float = 30,
        now: Callable[[], float] = time.monotonic,
        bot_id: int = 700_000_001,
    ) -> None:
        self.now = now
        self.chat_burst, self.chat_per_second = chat_burst, chat_per_second
        self.group_per_minute, self.global_per_second = group_per_minute, global_per_second
        self.bot = {"id": bot_id, "is_bot": True, "first_name": "spanvisor", "username": "spanvisor_fake_bot"}
        self.chats: dict[int, Chat] = {}
        self.blocked: set[int] = set()
        self.calls: list[Call] = []
        self.base_url = ""
        self.webhook: dict[str, Any] | None = None
        self.webhook_posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._updates: list[dict[str, Any]] = []
        self._update_id = 100_000
        self._next_message = 1
        self._next_topic = 10
        self._queries: dict[str, bool] = {}  # id -> answered
        self._buckets: dict[Any, _Bucket] = {}
        self._windows: dict[int, deque[float]] = {}
        self._poll: asyncio.Event | None = None
        self._new: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._new = asyncio.Event()
        return self.base_url

    async def stop(self) -> None:
        if self._poll is not None:
            self._poll.set()
        if self._runner:
            await self._runner.cleanup()

    def url(self, token: str, method: str) -> str:
        return f"{self.base_url}/bot{token}/{method}"

    # --- the world a test sets up -----------------------------------------

    def chat(self, chat_id: int, kind: str = "group", forum: bool = False, bot_status: str = "member") -> Chat:
        self.chats[chat_id] = Chat(chat_id, kind, forum, bot_status)
        return self.chats[chat_id]

    async def press(self, chat_id: int, message_id: int, data: str, user_id: int, name: str = "Ada") -> str:
        """A person's click on a button of the bot's message: a
        ``callback_query`` update; its id, for ``answerCallbackQuery``."""
        message = self.chats[chat_id].messages[message_id]
        qid = f"{user_id}{len(self._queries):06d}"
        self._queries[qid] = False
        query = {"id": qid, "from": _user(user_id, name), "message": message, "chat_instance": str(chat_id)}
        await self._update({"callback_query": {**query, "data": data}})
        return qid

    async def say(self, chat_id: int, text: str, user_id: int, name: str = "Ada") -> None:
        """A person's message in the chat: a ``message`` update."""
        chat = self.chats[chat_id]
        message = {
            "message_id": self._message_id(),
            "date": int(time.time()),
            "chat": {"id": chat.id, "type": chat.type},
            "from": _user(user_id, name),
            "text": text,
        }
        chat.messages[message["message_id"]] = message
        await self._update({"message": message})

    @property
    def polling(self) -> bool:
        """Whether a ``getUpdates`` waits for updates now."""
        return self._poll is not None and not self._poll.is_set()

    def sent(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's messages in the chat, as they are now, in order."""
        chat = self.chats[chat_id]
        return [m for m in chat.messages.values() if m.get("from", {}).get("id") == self.bot["id"]]

    def calls_to(self, method: str, ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (ok is None or c.response.get("ok") is ok)]

    # --- HTTP -------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    return self._reply(method, args, ApiError(400, "Bad Request: can't parse JSON"))
                args.update(body)
            else:
                args.update(dict(await request.post()))
        token = request.match_info["token"]
        try:
            if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", token) or token.endswith(":bad"):
                raise ApiError(401, "Unauthorized")
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(args)
        except ApiError as exc:
            return self._reply(method, args, exc)
        return self._reply(method, args, result)

    def _reply(self, method: str, args: dict[str, Any], result: Any) -> web.Response:
        if isinstance(result, ApiError):
            doc: dict[str, Any] = {"ok": False, "error_code": result.code, "description": result.description}
            if result.retry_after is not None:
                doc["parameters"] = {"retry_after": result.retry_after}
            status = result.code
        else:
            doc, status = {"ok": True, "result": result}, 200
        self.calls.append(Call(method, args, status, doc, self.now()))
        return web.json_response(doc, status=status)

    # --- methods ----------------------------------------------------------

    async def _m_getMe(self, args: dict[str, Any]) -> Any:
        return self.bot

    async def _m_getChat(self, args: dict[str, Any]) -> Any:
        chat = self._chat(args)
        return {"id": chat.id, "type": chat.type, "title": f"chat {chat.id}", "is_forum": chat.is_forum}

    async def _m_getChatMember(self, args: dict[str, Any]) -> Any:
        chat = self._chat(args)
        if _int(args.get("user_id")) != self.bot["id"]:
            raise ApiError(400, "Bad Request: user not found")
        member: dict[str, Any] = {"status": chat.bot_status, "user": self.bot}
        if chat.bot_status == "administrator":
            member["can_post_messages"] = True
        return member

    async def _m_sendMessage(self, args: dict[str, Any]) -> Any:
        chat = self._chat(args)
        text = self._text(args)
        markup = self._markup(args)
        thread = _int(args.get("message_thread_id"))
        if thread is not None and (not chat.is_forum or thread not in chat.topics):
            raise ApiError(400, "Bad Request: message thread not found")
        reply_to = _int(args.get("reply_to_message_id"))
        params = _json(args.get("reply_parameters"))
        if isinstance(params, dict):
            reply_to = _int(params.get("message_id"))
        if reply_to is not None and reply_to not in chat.messages:
            raise ApiError(400, "Bad Request: message to be replied not found")
        self._limit(chat)
        message: dict[str, Any] = {
            "message_id": self._message_id(),
            "date": int(time.time()),
            "chat": {"id": chat.id, "type": chat.type},
            "from": {"id": self.bot["id"], "is_bot": True, "first_name": self.bot["first_name"]},
            "text": text,
        }
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = {"message_id": reply_to}
        if markup is not None:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        return message

    async def _m_editMessageText(self, args: dict[str, Any]) -> Any:
        chat = self._chat(args)
        message = chat.messages.get(_int(args.get("message_id")) or -1)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.bot["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        text, markup = self._text(args), self._markup(args)
        if text == message["text"] and markup == message.get("reply_markup"):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message",
            )
        self._limit(chat)
        message["text"] = text
        message["edit_date"] = int(time.time())
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        return message

    async def _m_answerCallbackQuery(self, args: dict[str, Any]) -> Any:
        qid = str(args.get("callback_query_id") or "")
        if self._queries.get(qid, True):  # unknown, or answered already
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if utf16_len(str(args.get("text") or "")) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._queries[qid] = True
        return True

    async def _m_createForumTopic(self, args: dict[str, Any]) -> Any:
        chat = self._chat(args)
        name = str(args.get("name") or "")
        if not chat.is_forum:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        if not 1 <= len(name) <= 128:
            raise ApiError(400, "Bad Request: TOPIC_TITLE_EMPTY" if not name else "Bad Request: TOPIC_TITLE_INVALID")
        self._next_topic += 1
        chat.topics[self._next_topic] = name
        return {"message_thread_id": self._next_topic, "name": name, "icon_color": 7322096}

    async def _m_setWebhook(self, args: dict[str, Any]) -> Any:
        url = str(args.get("url") or "")
        secret = args.get("secret_token")
        if secret is not None and not SECRET_TOKEN.fullmatch(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if not url:
            self.webhook = None
            return True
        if not url.startswith(("https://", "http://127.0.0.1")):  # loopback plain HTTP for tests only
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = {"url": url, "secret_token": secret}
        if self._poll is not None:
            self._poll.set()
        return True

    async def _m_deleteWebhook(self, args: dict[str, Any]) -> Any:
        self.webhook = None
        if str(args.get("drop_pending_updates")).lower() == "true":
            self._updates.clear()
        return True

    async def _m_getWebhookInfo(self, args: dict[str, Any]) -> Any:
        url = self.webhook["url"] if self.webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    async def _m_getUpdates(self, args: dict[str, Any]) -> Any:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook")
        offset = _int(args.get("offset"))
        if offset is not None:  # confirms every update before it
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = max(1, min(100, _int(args.get("limit")) or 100))
        wait = max(0, min(50, _int(args.get("timeout")) or 0))
        if self._poll is not None:
            self._poll.set()  # the earlier poll ends with 409, as Telegram ends it
        mine = self._poll = asyncio.Event()
        assert self._new is not None
        deadline = asyncio.get_running_loop().time() + wait
        while not self._updates and not mine.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            self._new.clear()
            waits = [asyncio.ensure_future(self._new.wait()), asyncio.ensure_future(mine.wait())]
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        if mine.is_set():
            raise ApiError(
                409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            )
        self._poll = None
        return self._updates[:limit]

    # --- helpers ----------------------------------------------------------

    def _chat(self, args: dict[str, Any]) -> Chat:
        chat_id = _int(args.get("chat_id"))
        if chat_id is not None and chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        chat = self.chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        if chat.bot_status == "kicked":
            raise ApiError(403, "Forbidden: bot was kicked from the group chat")
        if chat.bot_status == "left":
            raise ApiError(403, "Forbidden: bot is not a member of the group chat")
        return chat

    def _text(self, args: dict[str, Any]) -> str:
        """The text as Telegram keeps it: with ``parse_mode`` HTML, its tags
        parsed away (the formatting becomes entities, not kept here) and its
        entities unescaped; the length is counted on that, as Telegram does."""
        text = str(args.get("text") or "")
        if args.get("parse_mode") == "HTML":
            _check_html(text)
            text = html.unescape(_TAG.sub("", text))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return text

    def _markup(self, args: dict[str, Any]) -> dict[str, Any] | None:
        markup = _json(args.get("reply_markup"))
        if markup is None:
            return None
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for button in (b for r in rows for b in r):
            if not isinstance(button, dict) or not str(button.get("text") or ""):
                raise ApiError(400, "Bad Request: BUTTON_TEXT_INVALID")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _limit(self, chat: Chat) -> None:
        now = self.now()
        buckets = [
            ("all", self.global_per_second, self.global_per_second),
            (("chat", chat.id), self.chat_per_second, self.chat_burst),
        ]
        waits = []
        for key, rate, burst in buckets:
            bucket = self._buckets.setdefault(key, _Bucket(rate, burst, now))
            if bucket.refill(now) < 1:
                waits.append((1 - bucket.tokens) / bucket.rate)
        group = chat.type in ("group", "supergroup")
        window = self._windows.setdefault(chat.id, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if group and len(window) >= self.group_per_minute:
            waits.append(window[0] + 60 - now)
        if waits:  # a refused call takes nothing from any limit
            after = max(1, math.ceil(max(waits)))
            raise ApiError(429, f"Too Many Requests: retry after {after}", retry_after=after)
        for key, _rate, _burst in buckets:
            self._buckets[key].tokens -= 1
        if group:
            window.append(now)

    def _message_id(self) -> int:
        self._next_message += 1
        return self._next_message

    async def _update(self, body: dict[str, Any]) -> None:
        self._update_id += 1
        update = {"update_id": self._update_id, **body}
        if self.webhook is None:
            self._updates.append(update)
            if self._new is not None:
                self._new.set()
            return
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = str(self.webhook["secret_token"])
        self.webhook_posts.append((headers, update))
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            async with http.post(self.webhook["url"], data=json.dumps(update), headers=headers) as resp:
                await resp.read()


def _user(user_id: int, name: str) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON object") from None
    return value


_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")


def _check_html(text: str) -> None:
    """Telegram's HTML: only its tags, each closed in order, and every
    other ``<``, ``>`` and ``&`` written as an entity."""
    bare = _ENTITY.sub("", _TAG.sub("", text))
    for ch in "<>&":
        if ch in bare:
            at = len(text[: text.find(ch)].encode())
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unexpected "{ch}" at byte offset {at}')
    stack: list[str] = []
    for m in _TAG.finditer(text):
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if tag not in _HTML_TAGS:
            raise ApiError(
                400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}" at byte offset {m.start()}'
            )
        if not closing:
            stack.append(tag)
        elif not stack or stack.pop() != tag:
            raise ApiError(400, f"Bad Request: can't parse entities: Unexpected end tag at byte offset {m.start()}")
    if stack:
        raise ApiError(
            400, "Bad Request: can't parse entities: Can't find end tag corresponding to start tag " + stack[-1]
        )


__all__ = ["MAX_TEXT", "ApiError", "Call", "Chat", "FakeTelegram", "utf16_len"]
