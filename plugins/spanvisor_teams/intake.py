"""Presses on a task card's buttons: Teams POSTs them to the bot's
messaging endpoint, serve's ``POST /teams/messages`` (behind your proxy,
the address the bot's Azure registration names; the proxy's host name must
be one of SPANVISOR_ALLOWED_HOSTS, or serve's admin port refuses it).

A press is an ``invoke`` activity named ``adaptiveCard/action`` (an
``Action.Execute``). Nothing in its body is believed until its bearer token
proves the Bot Connector sent it for this bot (:mod:`.auth`: the
connector's published keys, issuer, audience, time, the service URL ours).
A POST without a bearer token is refused before its body is read; the body
is read (at most :data:`MAX_BODY`) only because the token names the
service URL the activity names. Then who pressed is the activity's
``from.aadObjectId`` (the person's Microsoft Entra object id, which Teams
sets, not the person) looked up as ``teams_user`` in the deciders file, and
what is decided is the button's stored entry (``teams.buttons``), pressed
in the channel it was shown in; never the press's data. An account the
file does not name may see, never decide: its press is audited as refused.

The connector's token signs no body: whoever holds one (it is valid for an
hour) could send any activity for this bot. So no address an activity names
is ever called: the sink sends only to its configured service URL (an
activity naming another is refused, :mod:`.auth`), and 'Show all' replies
in the thread the state store says the card is in, not one the press names.

Teams waits for the answer (a short notice it shows the person), so a
press is decided while the request waits, on the sink's loop, at most
:data:`ANSWER_S`; a proven press taking longer goes on (never cut halfway
through a decision) and the person is told to watch the card, while one
not proven by then is dropped and answered 503. At most
:data:`MAX_IN_FLIGHT` activities are worked on at once, counted until
their work ends, not until their answer: whoever reaches the port cannot
pile work onto the sink's loop. The same press sent again decides once
(the control log keeps a decision's id).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from spanvisor.chat.buttons import Button, from_stored, token_of
from spanvisor.chat.claims import Claims
from spanvisor.chat.presses import decide
from spanvisor.control.deciders import Deciders
from spanvisor.control.hub import Control
from spanvisor.control.runs import request_from_dict
from spanvisor.sink import AdminRoute
from spanvisor.stats import PipelineStats

from .auth import Keys, Unproven
from .settings import MESSAGES_PATH

log = logging.getLogger("spanvisor.teams")
MAX_BODY = 256 * 1024  # an invoke is a few kB
ANSWER_S = 4.0  # Teams shows an error when a bot answers an invoke slowly
MAX_IN_FLIGHT = 100
VERBS = {"spanvisor.approve": "approve", "spanvisor.reject": "reject", "spanvisor.show": "show"}
REPLIES = "teams.reply"
BUTTONS = "teams.buttons"
PARENTS = "teams.parent"
MESSAGE = "application/vnd.microsoft.activity.message"
ERROR = "application/vnd.microsoft.error"
# An Entra object id as Teams sends it: anything else names nobody (and is not written to the audit).
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# An activity id kept as it is in a decision's id (Teams': "f:…" or digits); another is hashed.
_ACTIVITY_ID = re.compile(r"[A-Za-z0-9:._@;=+/-]{1,128}")
_LOG_QUIET_S = 60.0


def said(text: str) -> dict[str, Any]:
    """An invoke's answer: a notice Teams shows the person who pressed."""
    return {"statusCode": 200, "type": MESSAGE, "value": text}


def bad(message: str) -> dict[str, Any]:
    """An invoke's answer to a malformed one (what Microsoft's SDKs answer)."""
    return {"statusCode": 400, "type": ERROR, "value": {"code": "BadRequest", "message": message}}


class _Wait:
    """Whether an activity's answer still waits for it: its work is dropped,
    once not proven in time, only before a decision could start (a lock,
    since the work runs on the sink's loop and the answer on serve's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proven = False
        self._dropped = False

    def prove(self) -> bool:
        """The work goes on past the proof: False when the answer gave up first."""
        with self._lock:
            self._proven = not self._dropped
            return self._proven

    def give_up(self) -> bool:
        """The answer cannot wait: True when the work was still unproven (now dropped)."""
        with self._lock:
            self._dropped = not self._proven
            return self._dropped


class Intake:
    def __init__(
        self,
        app_id: str,
        service_url: str,
        keys: Keys,
        claims: Claims,
        control: Control,
        people: Deciders,
        stats: PipelineStats,
        show: Callable[[str, list[dict[str, Any]]], Awaitable[bool]],
    ) -> None:
        """``show`` posts a request whole as replies in a thread (the sink's pacing)."""
        self.app_id, self.service_url, self.keys, self.claims = app_id, service_url, keys, claims
        self.control, self.people, self.stats, self.show = control, people, stats, show
        self.loop = asyncio.get_running_loop()  # the sink's: decisions and the keys live there
        self._inflight = 0  # on serve's loop only
        self._closed = False
        self._showing: set[str] = set()  # on the sink's loop only
        self._quiet_until = 0.0  # no refusal logged again before

    def __repr__(self) -> str:
        return f"Intake({self.app_id!r})"

    def routes(self) -> Sequence[AdminRoute]:
        return (("POST", MESSAGES_PATH, self.activity),)

    async def close(self) -> None:
        """No activity is taken once the sink stops (its loop will not run them);
        the keys hold nothing open (each fetch has a session of its own)."""
        self._closed = True

    # --- the messaging endpoint (serve's admin loop) -------------------------------

    async def activity(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="too large\n")
        authorization = request.headers.get("Authorization")
        if not authorization or authorization.strip()[:7].lower() != "bearer ":
            # The Bot Connector always sends its token: without one, nothing is read.
            self._refused("no_header" if not authorization else "not_bearer")
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"}, text="unauthorized\n")
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):  # never more than MAX_BODY held
            body += chunk
            if len(body) > MAX_BODY:
                return web.Response(status=413, text="too large\n")
        try:
            doc: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            return web.Response(status=400, text="not an activity\n")
        if self._closed or self._inflight >= MAX_IN_FLIGHT:
            self.stats.inc("teams_presses_total", outcome="busy")
            return web.Response(status=503, headers={"Retry-After": "1"}, text="busy\n")
        wait = _Wait()
        work = self.handle(authorization, doc, wait)
        try:
            future = asyncio.run_coroutine_threadsafe(work, self.loop)
        except RuntimeError:  # the sink's loop is closed: it has stopped
            work.close()
            return web.Response(status=503, headers={"Retry-After": "1"}, text="stopping\n")
        self._inflight += 1
        done = asyncio.wrap_future(future)
        done.add_done_callback(self._ended)  # counted until the work ends, not until the answer
        try:
            # shield: a timeout must not cancel a decision halfway; an unproven one stops itself.
            status, answer = await asyncio.wait_for(asyncio.shield(done), ANSWER_S)
        except TimeoutError:
            if wait.give_up():
                self.stats.inc("teams_presses_total", outcome="slow")
                return web.Response(status=503, headers={"Retry-After": "1"}, text="busy\n")
            status, answer = 200, said("⏳ Still deciding: the card shows the outcome.")
        except asyncio.CancelledError:
            if not done.cancelled():
                raise  # this request's own: the client went away
            return web.Response(status=503, headers={"Retry-After": "1"}, text="stopping\n")  # the sink stopped
        if answer is None:
            return web.Response(status=status)
        return web.json_response(answer, status=status)

    def _ended(self, done: asyncio.Future[tuple[int, Any]]) -> None:
        self._inflight -= 1
        if not done.cancelled() and done.exception() is not None:  # handle() catches all: a bug if here
            log.error("teams: an activity's work failed (%s)", type(done.exception()).__name__)

    def _refused(self, reason: str) -> None:
        """Count a refusal; log it, at most once a minute: whoever reaches the port must not fill the log."""
        self.stats.inc("teams_presses_total", outcome="unproven")
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + _LOG_QUIET_S
            log.warning("teams: an activity POSTed to %s is refused: %s", MESSAGES_PATH, reason)

    # --- one activity (the sink's loop) ---------------------------------------------

    async def handle(
        self, authorization: str | None, activity: Mapping[str, Any], wait: _Wait | None = None
    ) -> tuple[int, Any]:
        """The HTTP status and body to answer ``activity`` with."""
        try:
            proof = await self.keys.verify(authorization, activity, self.app_id, self.service_url)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a check fails closed; the token is never logged
            log.error("teams: verifying an activity failed (%s)", type(exc).__name__)
            proof = Unproven("bad_token")
        if isinstance(proof, Unproven):
            self._refused(proof.reason)
            return 401, None
        if wait is not None and not wait.prove():
            return 503, None  # answered already: too late to decide
        if activity.get("type") == "message" and _submitted(activity):
            # Action.Submit, the buttons' fallback on a client without Universal
            # Actions: the same press, but a message gets no notice back (the card shows it).
            outcome = "error"
            try:
                outcome, _ = await self._press(activity)
            finally:
                self.stats.inc("teams_presses_total", outcome=outcome)
            return 200, None
        if activity.get("type") != "invoke":
            return 200, None  # a message to the bot, a member added: nothing to do
        if activity.get("name") != "adaptiveCard/action":
            return 501, None  # what Microsoft's SDKs answer an invoke they do not handle
        outcome = "error"
        try:
            outcome, answer = await self._press(activity)
            return 200, answer
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here answers the person, never the port with a 500 trace
            log.error("teams: a press failed (%s)", type(exc).__name__, exc_info=exc)
            return 200, said("⚠️ spanvisor could not take this press: try again, or use the command.")
        finally:
            self.stats.inc("teams_presses_total", outcome=outcome)

    async def _press(self, activity: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        value = activity.get("value")
        if activity.get("type") == "message":  # Action.Submit: the data is the value; no verb
            data: Any = value
            verb: Any = None
        else:
            action = value.get("action") if isinstance(value, dict) else None
            data = action.get("data") if isinstance(action, dict) else None
            verb = action.get("verb") if isinstance(action, dict) else None
            if verb not in VERBS:
                return "malformed", bad("not a spanvisor button")
        token = token_of(data.get("sv") if isinstance(data, dict) else None, "")
        if token is None:
            return "malformed", bad("not a spanvisor button")
        stored = await self.claims.get(BUTTONS, token)
        button = from_stored(stored) if stored is not None else None
        if button is None or button.token != token or (verb is not None and button.action != VERBS[str(verb)]):
            return "unknown", said("⚠️ This button is not one spanvisor knows (any more).")
        conversation = activity.get("conversation")
        thread = conversation.get("id") if isinstance(conversation, dict) else None
        if not isinstance(thread, str) or thread.partition(";messageid=")[0] != button.chat:
            return "elsewhere", said("⚠️ This button belongs to another channel.")
        sender = activity.get("from")
        aad = sender.get("aadObjectId") if isinstance(sender, dict) else None
        if not isinstance(aad, str) or not _GUID.fullmatch(aad):
            return "anonymous", said("⚠️ Teams did not say who pressed.")
        if button.action == "show":
            shown = await self._whole(button)
            return "shown", said(
                "📄 The whole request is in the replies." if shown else "⚠️ Not shown: see `spanvisor approvals --full`."
            )
        outcome, text = await decide(
            self.control,
            button,
            press_id=press_id(activity.get("id"), aad, token),
            actor_id=f"teams:{aad.lower()}",
            person=self.people.on_teams(aad),
            source="teams",
            key="teams_user",
            comment=_comment(data, button.approval_id),
        )
        return outcome, said(text)

    async def _whole(self, button: Button) -> bool:
        """Post the request ``button`` is for whole in its card's thread (only
        while its digest is the one the button was made for), once."""
        from .render import whole_pieces

        record = await self.control.run(button.task_id, button.run_id or None)
        requests = record.get("requests") if record is not None else None
        req = request_from_dict(requests.get(button.approval_id)) if isinstance(requests, Mapping) else None
        if req is None or req.digest != button.digest:
            return False
        thread = await self._thread(button)
        if thread is None:
            return False
        key = f"{button.task_id}/{button.run_id}/whole/{button.approval_id}"
        if key in self._showing:  # a second press while the first posts (claims are per process)
            return True
        self._showing.add(key)
        try:
            claim = await self.claims.claim(REPLIES, key)
            if claim.value is not None or not claim.won:
                return True  # shown already
            pieces = whole_pieces(req)
            if not await self.show(thread, pieces):
                await self.claims.release(REPLIES, key)
                return False
            await self.claims.settle(REPLIES, key, {"pieces": len(pieces)})
            return True
        finally:
            self._showing.discard(key)

    async def _thread(self, button: Button) -> str | None:
        """The thread of the card ``button`` is on, as the sink stored it when
        it made the card (in the channel the button was made for), or None."""
        key = f"{button.task_id}/{button.run_id}" if button.run_id else button.task_id
        placed = await self.claims.get(PARENTS, key)
        if not isinstance(placed, Mapping) or placed.get("channel") != button.chat:
            return None
        thread, root = placed.get("thread"), placed.get("message_id")
        if isinstance(thread, str) and thread.partition(";messageid=")[0] == button.chat:
            return thread
        return f"{button.chat};messageid={root}" if isinstance(root, str) and root else None


def press_id(activity_id: object, aad: str, token: str) -> str:
    """A press's id for its decision (the same press sent again is one):
    Teams' activity id, hashed when it is not one's shape (a decision's id
    stays short whatever a request says); without one, the person and the
    button (one press of a button per person)."""
    if isinstance(activity_id, str) and _ACTIVITY_ID.fullmatch(activity_id):
        return activity_id
    if isinstance(activity_id, str | int) and not isinstance(activity_id, bool) and activity_id != "":
        return "h:" + hashlib.sha256(str(activity_id).encode()).hexdigest()[:32]
    return f"{aad.lower()}:{token}"


__all__ = ["ANSWER_S", "MAX_BODY", "MAX_IN_FLIGHT", "Intake", "bad", "press_id", "said"]


def _submitted(activity: Mapping[str, Any]) -> bool:
    """A message carrying a spanvisor button's data: an ``Action.Submit`` press."""
    value = activity.get("value")
    return isinstance(value, dict) and isinstance(value.get("sv"), str)


def _comment(data: Mapping[str, Any], approval_id: str) -> str | None:
    """The person's comment on the request pressed for (its box's input, which
    Teams merges into the data), at most as long as the box takes."""
    from .render import MAX_COMMENT, comment_id

    text = data.get(comment_id(approval_id))
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip()[:MAX_COMMENT]
