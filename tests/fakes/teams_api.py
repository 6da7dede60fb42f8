"""A local fake of Microsoft Teams' Bot Connector service (aiohttp, 127.0.0.1).

It speaks what a Teams bot uses over HTTP, as Microsoft's Bot Connector
REST reference documents it, so a sink that passes against it does not
fail against Teams (issue 69):

- **The bot's token** (``POST /{tenant}/oauth2/v2.0/token``, client
  credentials with the app's id and password, scope
  ``https://api.botframework.com/.default``): an access token with its
  ``expires_in``; a wrong password is ``401 invalid_client``.
- **The connector** (the service URL, ``<base>/connector``), every call with
  ``Authorization: Bearer <that token>`` (none, another or an expired one:
  401):
  ``POST /v3/conversations`` makes a new thread in a channel (``isGroup``,
  ``channelData.channel.id``, its first ``activity``) and answers its
  conversation id (``<channel>;messageid=<id>``) and ``activityId``;
  ``POST /v3/conversations/{id}/activities`` sends into a conversation (a
  thread's id: a reply in it); ``POST …/activities/{activityId}`` replies to
  an activity; ``PUT …/activities/{activityId}`` updates one the bot sent;
  ``GET …/pagedmembers`` reads the roster (404/403 as above).
  Errors as the connector gives them: ``{"error": {"code", "message"}}``
  (``ConversationNotFound`` 404, ``BotNotInConversationRoster`` 403,
  ``MessageSizeTooBig`` 413 over ``max_activity`` bytes, about 100 KB for a
  bot's message today, ``BadArgument`` 400); a token refused is 401 with
  ``{"message": "Authorization has been denied for this request."}``, not
  that envelope. A conversation id in a path may come percent-encoded or
  not (Microsoft's SDKs differ); both are taken. With ``accepted_empty``
  a send answers 202 with no body, as Teams sometimes does: a client must
  not count on an ``id``.
- **Its limits**, enforced, not learnt: per bot per thread (the channel
  thread, or the conversation) 7 calls a second, 8 in 2 s, 60 in 30 s,
  1,800 in an hour; 50 a second for the app in all; over one, HTTP 429
  ``Throttled`` with ``Retry-After`` (seconds). Sending and updating both
  count here (Microsoft's page says every request is under "the same
  policy"; whether updates count is not stated). ``fail_next`` makes the
  next calls answer a status Teams says to retry (412, 502, 503, 504).

Sources (read 2026-11-29): the Bot Connector REST API reference and its
authentication page (learn.microsoft.com/azure/bot-service/rest-api/),
Teams' "Rate limiting for agents", "Build conversational capability" (the
status codes) and "Format your bot messages" (the size), and the Adaptive
Cards Universal Action Model.
- **Signed activities to the bot** (a person's press on an Adaptive Card's
  ``Action.Execute``: an ``invoke`` named ``adaptiveCard/action``):
  :meth:`FakeTeams.press` POSTs one to the bot's messaging endpoint with a
  JWT signed by a key of the fake's own, published at
  ``/v1/.well-known/openidconfiguration`` and its ``jwks_uri`` (keys
  endorsed for ``msteams``), claims ``iss`` ``https://api.botframework.com``,
  ``aud`` the app id, ``serviceurl`` the service URL; :meth:`FakeTeams.sign`
  makes the forged ones a test sends itself.

Clock: ``now`` (monotonic by default) for the limits, wall time for tokens.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import ClientSession, ClientTimeout, web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
MAX_ACTIVITY = 100 * 1024
# Per bot per thread: (calls, seconds) windows; and the app's in all.
THREAD_LIMITS = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))
APP_PER_SECOND = 50


class ConnectorError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass
class Channel:
    id: str  # 19:…@thread.tacv2
    team: str
    bot_member: bool = True
    # Threads by their root activity id: the activities in each, in order.
    threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Call:
    method: str  # HTTP method
    path: str
    body: Any
    status: int
    response: Any
    at: float


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey
    endorsements: tuple[str, ...] = ("msteams",)

    def jwk(self) -> dict[str, Any]:
        doc: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**doc, "kid": self.kid, "use": "sig", "endorsements": list(self.endorsements)}


def new_key(kid: str, endorsements: tuple[str, ...] = ("msteams",)) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), endorsements)


class FakeTeams:
    def __init__(
        self,
        app_id: str = "00000000-0000-0000-0000-0000000000a1",
        app_password: str = "app-password",
        tenant: str = "11111111-1111-1111-1111-111111111111",
        *,
        token_ttl_s: float = 3600.0,
        scale: float = 1.0,
        now: Callable[[], float] = time.monotonic,
        max_activity: int = MAX_ACTIVITY,
        accepted_empty: bool = False,
    ) -> None:
        """``scale`` multiplies every limit's count (a test that is not about
        them runs faster); the windows keep Teams' lengths."""
        self.app_id, self.app_password, self.tenant = app_id, app_password, tenant
        self.token_ttl_s, self.scale, self.now = token_ttl_s, scale, now
        self.max_activity, self.accepted_empty = max_activity, accepted_empty
        self.fail_next: list[int] = []  # statuses the next connector calls answer, in turn
        self.keys = [new_key("teams-k1")]
        self.channels: dict[str, Channel] = {}
        self.tokens: dict[str, float] = {}  # access token -> expiry (wall time)
        self.calls: list[Call] = []
        self.invokes: list[tuple[int, Any]] = []  # what the bot answered each press
        # GETs of the OpenID metadata and of the JWKS (a verifier's fetches).
        self.openid_requests = 0
        self.jwks_requests = 0
        self.base_url = ""
        self._windows: dict[str, deque[float]] = {}
        self._app: deque[float] = deque()
        self._next = 1_700_000_000_000
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1/.well-known/openidconfiguration", self._openid)
        app.router.add_get("/v1/.well-known/keys", self._jwks)
        app.router.add_route("*", "/connector/v3/{path:.*}", self._connector)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def service_url(self) -> str:
        return f"{self.base_url}/connector/"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/{self.tenant}/oauth2/v2.0/token"

    @property
    def openid_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    # --- the world a test sets up -----------------------------------------

    def channel(self, channel_id: str = "19:agents@thread.tacv2", team: str = "19:team@thread.tacv2") -> Channel:
        self.channels[channel_id] = Channel(channel_id, team)
        return self.channels[channel_id]

    def thread(self, channel_id: str, root_id: str) -> list[dict[str, Any]]:
        """The activities of a thread, its root first, each as it is now."""
        return self.channels[channel_id].threads[root_id]

    def roots(self, channel_id: str) -> list[dict[str, Any]]:
        return [t[0] for t in self.channels[channel_id].threads.values()]

    def calls_to(self, method: str, kind: str) -> list[Call]:
        """``kind``: create (a new thread), send, reply or update."""
        return [c for c in self.calls if c.method == method and _kind(c.path, c.method) == kind]

    # --- signed activities to the bot ----------------------------------------

    def sign(self, claims: dict[str, Any], *, key: SigningKey | None = None, alg: str = "RS256") -> str:
        key = key or self.keys[0]
        return jwt.encode(claims, key.private, algorithm=alg, headers={"kid": key.kid})

    def claims(self, **more: Any) -> dict[str, Any]:
        t = int(time.time())
        return {
            "iss": ISSUER,
            "aud": self.app_id,
            "iat": t,
            "nbf": t - 5,
            "exp": t + 3600,
            "serviceurl": self.service_url,
            **more,
        }

    def invoke(
        self,
        channel_id: str,
        root_id: str,
        message_id: str,
        verb: str,
        data: dict[str, Any],
        *,
        user: str,
        aad: str,
        name: str = "Ada",
    ) -> dict[str, Any]:
        """The activity a person's press on an ``Action.Execute`` makes."""
        return {
            "type": "invoke",
            "name": "adaptiveCard/action",
            "id": f"f:{secrets.token_hex(8)}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": {"id": user, "aadObjectId": aad, "name": name},
            "recipient": {"id": f"28:{self.app_id}", "name": "spanvisor"},
            "conversation": {
                "isGroup": True,
                "conversationType": "channel",
                "tenantId": self.tenant,
                "id": f"{channel_id};messageid={root_id}",
            },
            "replyToId": message_id,
            "channelData": {
                "tenant": {"id": self.tenant},
                "channel": {"id": channel_id},
                "team": {"id": self.channels[channel_id].team},
            },
            "value": {"action": {"type": "Action.Execute", "verb": verb, "data": data}},
        }

    async def press(self, endpoint: str, activity: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
        """POST ``activity`` to the bot's messaging endpoint, signed as the
        Bot Connector signs (or with ``token``); what the bot answered."""
        bearer = token if token is not None else self.sign(self.claims())
        async with ClientSession(timeout=ClientTimeout(total=10)) as http:
            async with http.post(endpoint, json=activity, headers={"Authorization": f"Bearer {bearer}"}) as resp:
                text = await resp.text()
                try:
                    body: Any = json.loads(text) if text else None
                except ValueError:
                    body = text
                self.invokes.append((resp.status, body))
                return resp.status, body

    # --- HTTP -------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.match_info["tenant"] not in (self.tenant, "botframework.com"):
            return web.json_response(
                {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."}, status=400
            )
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return web.json_response(
                {"error": "invalid_request", "error_description": "AADSTS900144: bad grant or scope."}, status=400
            )
        if form.get("client_id") != self.app_id or form.get("client_secret") != self.app_password:
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                status=401,
            )
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.time() + self.token_ttl_s
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": int(self.token_ttl_s),
                "ext_expires_in": int(self.token_ttl_s),
                "access_token": token,
            }
        )

    async def _openid(self, request: web.Request) -> web.Response:
        self.openid_requests += 1
        return web.json_response(
            {
                "issuer": ISSUER,
                "authorization_endpoint": f"{self.base_url}/v1/authorize",
                "jwks_uri": f"{self.base_url}/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        return web.json_response({"keys": [k.jwk() for k in self.keys]})

    async def _connector(self, request: web.Request) -> web.Response:
        path = "/v3/" + request.match_info["path"]
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        try:
            if not self._authorized(request):
                doc401 = {"message": "Authorization has been denied for this request."}
                self.calls.append(Call(request.method, path, body, 401, doc401, self.now()))
                return web.json_response(doc401, status=401)
            if self.fail_next:
                status = self.fail_next.pop(0)
                raise ConnectorError(status, "ServiceError" if status >= 500 else "PreconditionFailed", "Try again.")
            result, status = await self._route(request.method, path, body, len(raw))
        except ConnectorError as exc:
            doc = {"error": {"code": exc.code, "message": exc.message}}
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            self.calls.append(Call(request.method, path, body, exc.status, doc, self.now()))
            return web.json_response(doc, status=exc.status, headers=headers)
        self.calls.append(Call(request.method, path, body, status, result, self.now()))
        if self.accepted_empty and request.method == "POST" and status == 201 and path != "/v3/conversations":
            return web.Response(status=202)
        return web.json_response(result, status=status)

    def _authorized(self, request: web.Request) -> bool:
        got = request.headers.get("Authorization", "")
        token = got[7:] if got.startswith("Bearer ") else ""
        expiry = self.tokens.get(token)
        return expiry is not None and expiry >= time.time()

    async def _route(self, method: str, path: str, body: Any, size: int) -> tuple[Any, int]:
        parts = path.split("/")  # ["", "v3", "conversations", cid?, "activities"?, aid?]
        if method == "POST" and path == "/v3/conversations":
            return self._create(body, size), 201
        if method == "GET" and len(parts) == 5 and parts[2] == "conversations" and parts[4] == "pagedmembers":
            # A roster read (a check's): the bot's, in a conversation it is in. Its
            # own limits are twice a send's; no test reads a roster often.
            channel, _ = self._conversation(_unquote(parts[3]))
            return {"members": [{"id": "29:1ada", "name": "Ada"}], "continuationToken": None}, 200
        if len(parts) >= 5 and parts[2] == "conversations" and parts[4] == "activities":
            cid = _unquote(parts[3])
            aid = _unquote(parts[5]) if len(parts) > 5 else None
            channel, root = self._conversation(cid)
            activity = _activity(body, size, self.max_activity)
            if method == "POST":
                thread_root = root or aid
                if thread_root is None or thread_root not in channel.threads:
                    raise ConnectorError(
                        400, "BadArgument", "Posting a new message into a channel takes POST /v3/conversations."
                    )
                self._limit(f"{channel.id};{thread_root}")
                new = self._stamp(activity, reply_to=thread_root)
                channel.threads[thread_root].append(new)
                return {"id": new["id"]}, 201
            if method == "PUT" and aid is not None:
                target = next((a for t in channel.threads.values() for a in t if a["id"] == aid), None)
                if target is None:
                    raise ConnectorError(404, "ActivityNotFoundInConversation", "The activity was not found.")
                self._limit(f"{channel.id};{root or aid}")
                target.update(
                    {k: v for k, v in activity.items() if k in ("text", "textFormat", "attachments", "summary")}
                )
                if "attachments" not in activity:
                    target.pop("attachments", None)
                return {"id": aid}, 200
        raise ConnectorError(405, "MethodNotAllowed", f"{method} {path} is not a Bot Connector call this fake knows")

    def _create(self, body: Any, size: int) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("isGroup"):
            raise ConnectorError(400, "BadArgument", "A channel conversation needs isGroup and channelData.channel.id.")
        channel_id = ((body.get("channelData") or {}).get("channel") or {}).get("id")
        channel, _ = self._conversation(str(channel_id or ""))
        activity = _activity(body.get("activity"), size, self.max_activity)
        self._limit(channel.id)
        new = self._stamp(activity)
        channel.threads[new["id"]] = [new]
        return {"id": f"{channel.id};messageid={new['id']}", "activityId": new["id"]}

    def _conversation(self, cid: str) -> tuple[Channel, str | None]:
        base, _, rest = cid.partition(";messageid=")
        channel = self.channels.get(base)
        if channel is None:
            raise ConnectorError(404, "ConversationNotFound", "Conversation not found.")
        if not channel.bot_member:
            raise ConnectorError(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
        return channel, rest or None

    def _stamp(self, activity: dict[str, Any], reply_to: str | None = None) -> dict[str, Any]:
        self._next += 1
        new = {**activity, "id": str(self._next), "from": {"id": f"28:{self.app_id}"}}
        if reply_to is not None:
            new["replyToId"] = reply_to
        return new

    def _limit(self, thread: str) -> None:
        now = self.now()
        window = self._windows.setdefault(thread, deque())
        while window and window[0] <= now - 3600:
            window.popleft()
        while self._app and self._app[0] <= now - 1:
            self._app.popleft()
        waits = []
        for count, seconds in THREAD_LIMITS:
            inside = [t for t in window if t > now - seconds]
            if len(inside) >= count * self.scale:
                waits.append(inside[-math.ceil(count * self.scale)] + seconds - now)
        if len(self._app) >= APP_PER_SECOND * self.scale:
            waits.append(self._app[0] + 1 - now)
        if waits:  # a refused call counts against no limit
            raise ConnectorError(429, "Throttled", "Too many requests.", retry_after=max(1, math.ceil(max(waits))))
        window.append(now)
        self._app.append(now)


def _activity(body: Any, size: int, limit: int) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("type") != "message":
        raise ConnectorError(400, "BadArgument", "An activity of type message is required.")
    if size > limit:
        raise ConnectorError(413, "MessageSizeTooBig", "Message size too big.")
    if not body.get("text") and not body.get("attachments"):
        raise ConnectorError(400, "BadArgument", "A message needs text or an attachment.")
    for a in body.get("attachments") or []:
        if (
            not isinstance(a, dict)
            or a.get("contentType") != "application/vnd.microsoft.card.adaptive"
            or not isinstance(a.get("content"), dict)
        ):
            raise ConnectorError(400, "BadArgument", "Attachments must be Adaptive Cards here.")
    return dict(body)


def _unquote(part: str) -> str:
    from urllib.parse import unquote

    return unquote(part)


def _kind(path: str, method: str) -> str:
    if method == "GET":
        return "members"
    if path == "/v3/conversations":
        return "create"
    if method == "PUT":
        return "update"
    return "reply" if ";messageid=" in _unquote(path) or path.count("/") > 4 else "send"


__all__ = [
    "ISSUER",
    "MAX_ACTIVITY",
    "THREAD_LIMITS",
    "Call",
    "Channel",
    "ConnectorError",
    "FakeTeams",
    "SigningKey",
    "new_key",
]
