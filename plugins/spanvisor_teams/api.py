"""The Bot Connector REST API (Microsoft Teams) over HTTP, a :class:`Reply`
for every call instead of an exception.

Three calls are all a channel's task threads need: create a thread in a
channel (``POST /v3/conversations``), send into it (``POST
/v3/conversations/{id}/activities``, the id being ``<channel>;messageid=<root>``)
and update a message the bot sent (``PUT …/activities/{activityId}``).
Errors come as ``{"error": {"code", "message"}}`` mostly, but not always
(a refused token is ``{"message": …}``, a blocked bot ``{"errorCode": 209,
"message": "<json with subCode>"}``), so bodies are read defensively.

Every call carries ``Authorization: Bearer <token>``, the token got by the
OAuth client-credentials grant at the login URL with the app's id and
password. The token is a secret as the password is: it goes to the
configured service URL only (never on a redirect, which is not followed),
and no error string built here contains either.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

SCOPE = "https://api.botframework.com/.default"
# Refresh a token this long before it expires, or a tenth of its life if
# that is shorter: a call that starts just before expiry must still be let in.
TOKEN_MARGIN_S = 300.0
# A token answer without a usable ``expires_in``: keep it this long.
TOKEN_FALLBACK_S = 300.0
MAX_ERROR = 300
CREDENTIALS = "SPANVISOR_TEAMS_APP_ID and SPANVISOR_TEAMS_APP_PASSWORD"


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    status: int = 0  # HTTP status; 0 when no answer came
    # The connector's error.code (e.g. MessageSizeTooBig, Throttled); ours
    # for what it did not name: "connection", "timeout", "http_5xx",
    # "http_<status>" (a body without the envelope), "token" (the login
    # service refused the app's credentials).
    code: str = ""
    error: str = ""  # short, for a log line; never holds the token or password
    retry_after_s: float | None = None
    body: dict[str, Any] = field(default_factory=dict)
    # The request may have reached the connector and been done (a timeout or
    # a dropped connection after sending, a gateway's 502/504): a POST sent
    # again may show twice.
    sent_maybe: bool = False


class Connector:
    """The bot's client of one service URL. One aiohttp session, made on the
    first call (inside the running loop); one token shared by every call."""

    def __init__(
        self, app_id: str, password: str, tenant: str, login_url: str, service_url: str, timeout_s: float
    ) -> None:
        self._app_id, self._password = app_id, password
        self._token_url = f"{login_url.rstrip('/')}/{quote(tenant, safe='')}/oauth2/v2.0/token"
        # Encoded once here; the paths appended to it are percent-encoded by us.
        self._service = str(URL(service_url.rstrip("/")))
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None
        # One token request at a time: fifty calls finding no token make one.
        self._lock = asyncio.Lock()
        self._token = ""
        self._token_until = 0.0  # time.monotonic()

    # --- the three calls ------------------------------------------------

    async def create_thread(self, channel_id: str, activity: dict[str, Any]) -> Reply:
        """A new thread in a channel, ``activity`` its root. ``body["id"]`` is the
        thread's conversation id, ``body["activityId"]`` the root message's id."""
        params: dict[str, Any] = {"isGroup": True, "channelData": {"channel": {"id": channel_id}}, "activity": activity}
        reply = await self._request("POST", "/v3/conversations", params)
        if reply.ok and not reply.body.get("id") and isinstance(reply.body.get("activityId"), str | int):
            # Teams answers the thread's id as <channel>;messageid=<root>; build
            # it when an answer leaves it out.
            thread = f"{channel_id};messageid={reply.body['activityId']}"
            reply = replace(reply, body={**reply.body, "id": thread})
        return reply

    async def send(self, conversation_id: str, activity: dict[str, Any]) -> Reply:
        """A message into a conversation (a thread's id: a reply in that thread).
        ``body["id"]`` is the new message's id when Teams says it (a 202 does not)."""
        return await self._request("POST", f"/v3/conversations/{_segment(conversation_id)}/activities", activity)

    async def update(self, conversation_id: str, activity_id: str, activity: dict[str, Any]) -> Reply:
        """Replace a message the bot sent."""
        path = f"/v3/conversations/{_segment(conversation_id)}/activities/{_segment(activity_id)}"
        return await self._request("PUT", path, activity)

    async def token(self) -> Reply:
        """Whether the login service gives the bot its token (``spanvisor check``)."""
        got = await self._bearer(stale="")
        return got if isinstance(got, Reply) else Reply(True, 200)

    async def roster(self, conversation_id: str) -> Reply:
        """One member of a conversation: the connector answers only a bot in
        its roster (``spanvisor check``; it reads, so nothing shows)."""
        path = f"/v3/conversations/{_segment(conversation_id)}/pagedmembers?pageSize=1"
        return await self._request("GET", path, None)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- HTTP -----------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Reply:
        token = await self._bearer(stale="")
        if isinstance(token, Reply):
            return token
        # ``encoded``: yarl would otherwise decode what we percent-encoded.
        url = URL(self._service + path, encoded=True)
        reply = await self._once(method, url, body, token)
        if reply.status == 401:
            # Revoked or expired early: one new token and one more try; a
            # second 401 is the answer (the app is not the bot the connector knows).
            token = await self._bearer(stale=token)
            if isinstance(token, Reply):
                return token
            reply = await self._once(method, url, body, token)
        return reply

    async def _once(self, method: str, url: URL, body: dict[str, Any] | None, token: str) -> Reply:
        try:
            async with self._session().request(
                method, url, json=body, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError:
            return Reply(False, code="connection", error="could not connect to the Bot Connector service")
        except aiohttp.ConnectionTimeoutError:
            return Reply(False, code="timeout", error="no connection to the Bot Connector service in time")
        except TimeoutError:
            error = f"no answer from the Bot Connector service within {self._timeout_s:g} s"
            return Reply(False, code="timeout", error=error, sent_maybe=True)
        except aiohttp.ClientError as exc:
            error = f"the connection to the Bot Connector service dropped ({type(exc).__name__})"
            return Reply(False, code="connection", error=error, sent_maybe=True)
        doc = _json(raw)
        if 200 <= status < 300:
            return Reply(True, status, body=doc if isinstance(doc, dict) else {})
        code, message = error_of(status, doc)
        return Reply(
            False,
            status,
            code,
            self._scrub(message or f"HTTP {status}", token),
            retry_after,
            doc if isinstance(doc, dict) else {},
            sent_maybe=status in (500, 502, 504),
        )

    # --- the token --------------------------------------------------------

    async def _bearer(self, stale: str) -> str | Reply:
        """A token valid now: the cached one unless it is ``stale`` (the
        connector refused it) or about to expire."""
        async with self._lock:
            if self._token and self._token != stale and time.monotonic() < self._token_until:
                return self._token
            return await self._fetch_token()

    async def _fetch_token(self) -> str | Reply:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._app_id,
            "client_secret": self._password,
            "scope": SCOPE,
        }
        try:
            # No redirect: the password is in the body.
            async with self._session().post(self._token_url, data=form, allow_redirects=False) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError:
            return Reply(False, code="connection", error="could not connect to the login service for the bot's token")
        except TimeoutError:
            return Reply(False, code="timeout", error="no bot token from the login service in time")
        except aiohttp.ClientError as exc:
            error = f"the connection to the login service dropped ({type(exc).__name__})"
            return Reply(False, code="connection", error=error)
        doc = _json(raw)
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if status == 200 and isinstance(doc, dict) and isinstance(token, str) and token:
            life = _seconds(doc.get("expires_in"))
            life = TOKEN_FALLBACK_S if life is None else life
            self._token = token
            self._token_until = time.monotonic() + life - min(TOKEN_MARGIN_S, life / 10.0)
            return token
        if status >= 500 or status == 429:
            # The login service's trouble, not the app's: worth trying again.
            code = "http_5xx" if status >= 500 else "http_429"
            return Reply(False, status, code, f"the login service answered HTTP {status}", retry_after)
        reason = ""
        if isinstance(doc, dict):
            reason = str(doc.get("error") or "")
            described = str(doc.get("error_description") or "").split("\r\n")[0].split("\n")[0]
            if described:
                reason = f"{reason}: {described}" if reason else described
        error = (
            f"the login service refused the bot's credentials (HTTP {status}"
            f"{', ' + reason[:160] if reason else ''}): check {CREDENTIALS}"
            " (and SPANVISOR_TEAMS_TENANT for a single-tenant bot)"
        )
        return Reply(False, status, "token", self._scrub(error, ""))

    def _scrub(self, text: str, token: str) -> str:
        """Nothing we return may carry a secret, whatever a service echoes back."""
        for secret in (self._password, token, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text[:MAX_ERROR]


def _segment(part: str) -> str:
    """A conversation or activity id as one path segment: its ``:``, ``@``,
    ``;`` and anything else percent-encoded (as Microsoft's Python SDK sends it)."""
    return quote(part, safe="")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:  # UnicodeDecodeError is one too
        return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_of(status: int, doc: Any) -> tuple[str, str]:
    """The code and message of an error answer, whatever its shape."""
    fallback = "http_5xx" if status >= 500 else f"http_{status}"
    if not isinstance(doc, dict):
        return fallback, ""
    err = doc.get("error")
    if isinstance(err, dict):  # the connector's envelope
        code, message = err.get("code"), err.get("message")
        return (str(code) if code else fallback), str(message or "")
    message = str(doc.get("message") or doc.get("error_description") or "")
    if isinstance(err, str) and err:  # OAuth's shape: {"error": "...", "error_description": "..."}
        return err, message
    if "errorCode" in doc:
        # {"errorCode": 209, "message": "{\"subCode\":\"MessageWritesBlocked\",\"details\":…}"}
        inner = _json(message.encode())
        if isinstance(inner, dict):
            sub = inner.get("subCode")
            if sub:
                return str(sub), str(inner.get("details") or message)
        return fallback, message
    return fallback, message


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    seconds = _seconds(value.strip())
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = ["SCOPE", "Connector", "Reply", "error_of", "parse_retry_after"]
