"""The interactive half of the fake Slack: what a person's click sets off.

Web API methods (answered as Slack documents them, HTTP 200 with
``ok: false`` on errors):

- ``views.open``: ``trigger_id`` must be one this fake issued at most
  :attr:`Interactions.trigger_ttl_s` (3 s) ago and not used yet
  (``expired_trigger_id``, ``exchanged_trigger_id``, ``invalid_trigger_id``);
  the view is checked (a ``modal`` with a plain-text title of at most 24
  characters, ``callback_id`` ≤ 255, ``private_metadata`` ≤ 3,000, at most
  100 blocks, input blocks with a label and a known element, a submit
  button when there are inputs, ``close``/``submit`` plain text of at most
  24, section text at most 3,000, context 1 to 10 elements) and kept in
  :attr:`Interactions.views`; ``view_too_large`` above
  :attr:`Interactions.max_view_json` when a test sets it (Slack's own
  threshold is undocumented);
- ``chat.postEphemeral``: a channel, a user and text or blocks (the message
  rules of ``chat.postMessage``); kept in :attr:`Interactions.ephemerals`;
- ``usergroups.list`` / ``usergroups.users.list``: the groups in
  :attr:`Interactions.groups` (``no_such_subteam`` for others; the token
  ``xoxb-nogroups`` answers ``missing_scope``).

``response_url``: payload builders issue one per payload
(``/hooks/response/<id>`` on the fake), usable 5 times within 30 minutes
(then HTTP 404 ``used_url`` / ``expired_url``); posts are kept in
:attr:`Interactions.responses`.

Payload builders (:meth:`block_actions`, :meth:`view_submission`,
:meth:`slash_command`) make what Slack would send for a click, a modal
submission and ``/spanvisor``, each with a fresh ``trigger_id``.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .slack_blocks import message_error
from .slack_methods import TEXT_POST, Answer, error, ok
from .slack_store import Workspace

INPUT_ELEMENTS = frozenset(
    {"plain_text_input", "radio_buttons", "static_select", "checkboxes", "users_select", "datepicker"}
)
RESPONSE_USES = 5
RESPONSE_TTL_S = 30 * 60.0


@dataclass
class ResponsePost:
    response_id: str
    body: dict[str, Any]
    at: float


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str | None
    blocks: list[dict[str, Any]]


@dataclass
class _Url:
    issued: float
    uses: int = 0


@dataclass
class Interactions:
    workspace: Workspace
    base: str = ""  # http://127.0.0.1:port (set when the server starts)
    trigger_ttl_s: float = 3.0
    # Slack answers view_too_large for a view too large overall; its size is
    # undocumented, so there is none unless a test sets one (JSON characters).
    max_view_json: int | None = None
    groups: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # id -> (handle, users)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    ephemerals: list[Ephemeral] = field(default_factory=list)
    responses: list[ResponsePost] = field(default_factory=list)
    refused_responses: list[tuple[str, str]] = field(default_factory=list)
    _triggers: dict[str, tuple[float, bool]] = field(default_factory=dict)
    _urls: dict[str, _Url] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    METHODS = frozenset({"views.open", "chat.postEphemeral", "usergroups.list", "usergroups.users.list"})

    # --- Web API -----------------------------------------------------------

    def call(self, method: str, token: str, args: dict[str, Any]) -> Answer:
        if method.startswith("usergroups.") and token.startswith("xoxb-nogroups"):
            return error("missing_scope", needed="usergroups:read")
        if method == "views.open":
            return self._views_open(args)
        if method == "chat.postEphemeral":
            return self._post_ephemeral(args)
        if method == "usergroups.list":
            groups = [{"id": gid, "handle": h, "name": h, "user_count": len(u)} for gid, (h, u) in self.groups.items()]
            return ok(usergroups=groups)
        group = self.groups.get(str(args.get("usergroup")))
        return ok(users=list(group[1])) if group else error("no_such_subteam")

    def _views_open(self, args: dict[str, Any]) -> Answer:
        trigger = str(args.get("trigger_id") or "")
        issued = self._triggers.get(trigger)
        if issued is None:
            return error("invalid_trigger_id")
        if issued[1]:
            return error("exchanged_trigger_id")
        if time.monotonic() - issued[0] > self.trigger_ttl_s:
            return error("expired_trigger_id")
        view = args.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                return error("invalid_arguments")
        why = view_error(view)
        if why is not None:
            return error("invalid_arguments", response_metadata={"messages": [why]})
        if self.max_view_json is not None and len(json.dumps(view, ensure_ascii=False)) > self.max_view_json:
            return error("view_too_large")
        self._triggers[trigger] = (issued[0], True)
        vid = f"V{next(self._seq):010d}"
        stored = {**view, "id": vid, "hash": uuid.uuid4().hex[:12], "state": {"values": {}}}
        self.views[vid] = stored
        return ok(view=stored)

    def _post_ephemeral(self, args: dict[str, Any]) -> Answer:
        ch = self.workspace.by_name_or_id(args.get("channel"))
        if ch is None:
            return error("channel_not_found")
        if not isinstance(args.get("user"), str) or not args["user"].startswith(("U", "W")):
            return error("user_not_in_channel")
        if err := message_error(args, TEXT_POST):
            return error(err)
        self.ephemerals.append(Ephemeral(ch.id, args["user"], args.get("text"), list(args.get("blocks") or [])))
        return ok(message_ts=f"{int(time.time())}.{next(self._seq):06d}")

    # --- response_url ------------------------------------------------------

    def new_response_url(self) -> str:
        rid = uuid.uuid4().hex
        self._urls[rid] = _Url(time.monotonic())
        return f"{self.base}/hooks/response/{rid}"

    async def handle_response(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        url = self._urls.get(rid)
        why = None
        if url is None:
            why = "invalid_url"
        elif time.monotonic() - url.issued > RESPONSE_TTL_S:
            why = "expired_url"
        elif url.uses >= RESPONSE_USES:
            why = "used_url"
        try:
            body = await request.json()
        except ValueError:
            why = why or "invalid_payload"
            body = None
        if not isinstance(body, dict):
            why = why or "invalid_payload"
        elif why is None and (err := message_error(body, TEXT_POST)):
            why = err
        if why is not None:
            self.refused_responses.append((rid, why))
            return web.Response(status=404 if why.endswith("_url") else 400, text=why)
        assert url is not None and isinstance(body, dict)
        url.uses += 1
        self.responses.append(ResponsePost(rid, body, time.monotonic()))
        return web.Response(text="ok")

    # --- what Slack sends ---------------------------------------------------

    def new_trigger(self) -> str:
        trigger = f"{next(self._seq)}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}"
        self._triggers[trigger] = (time.monotonic(), False)
        return trigger

    def block_actions(
        self,
        *,
        channel_id: str,
        message_ts: str,
        action_id: str,
        value: str,
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        action_ts: str | None = None,
        channel_name: str = "agents",
    ) -> dict[str, Any]:
        """A click on a button of a message (Slack's ``block_actions``)."""
        return {
            "type": "block_actions",
            "team": {"id": "T0FAKE", "domain": "fake-workspace"},
            "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": "T0FAKE"},
            "api_app_id": "A0SPANV",
            "token": "verification-token-is-deprecated",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id, "is_ephemeral": False},
            "trigger_id": self.new_trigger(),
            "channel": {"id": channel_id, "name": channel_name},
            "message": {"type": "message", "ts": message_ts, "bot_id": "B0SPANV"},
            "response_url": self.new_response_url(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "spanvisor.actions",
                    "text": {"type": "plain_text", "text": action_id},
                    "value": value,
                    "type": "button",
                    "action_ts": action_ts or f"{time.time():.6f}",
                }
            ],
        }

    def view_submission(
        self,
        view_id: str,
        values: dict[str, dict[str, Any]],
        *,
        user_id: str = "U0ALICE",
        user_name: str = "alice",
    ) -> dict[str, Any]:
        """A submission of a modal opened with views.open, with the inputs'
        ``values`` as Slack lays them out (block_id -> action_id -> value)."""
        view = dict(self.views[view_id])
        view["state"] = {"values": values}
        return {
            "type": "view_submission",
            "team": {"id": "T0FAKE", "domain": "fake-workspace"},
            "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": "T0FAKE"},
            "api_app_id": "A0SPANV",
            "trigger_id": self.new_trigger(),
            "view": view,
            "response_urls": [],
        }

    def slash_command(
        self, text: str, *, user_id: str = "U0ALICE", user_name: str = "alice", channel_id: str = "C0AGENTS"
    ) -> dict[str, str]:
        """``/spanvisor <text>``: the form fields Slack posts (all strings)."""
        return {
            "token": "verification-token-is-deprecated",
            "team_id": "T0FAKE",
            "team_domain": "fake-workspace",
            "channel_id": channel_id,
            "channel_name": "agents",
            "user_id": user_id,
            "user_name": user_name,
            "command": "/spanvisor",
            "text": text,
            "api_app_id": "A0SPANV",
            "response_url": self.new_response_url(),
            "trigger_id": self.new_trigger(),
        }


def view_error(view: Any) -> str | None:
    """Why Slack would refuse this modal, or None."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return "view must be a modal"
    title = view.get("title")
    if not isinstance(title, dict) or title.get("type") != "plain_text" or not 0 < len(str(title.get("text"))) <= 24:
        return "title: plain_text of at most 24 characters"
    for button in ("close", "submit"):
        b = view.get(button)
        if b is not None and (
            not isinstance(b, dict) or b.get("type") != "plain_text" or not 0 < len(str(b.get("text"))) <= 24
        ):
            return f"{button}: plain_text of at most 24 characters"
    if len(str(view.get("callback_id") or "")) > 255:
        return "callback_id: at most 255 characters"
    if len(str(view.get("private_metadata") or "")) > 3000:
        return "private_metadata: at most 3000 characters"
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 100:
        return "blocks: 1 to 100"
    inputs = 0
    for b in blocks:
        if not isinstance(b, dict):
            return "block must be an object"
        if b.get("type") == "input":
            inputs += 1
            label, el = b.get("label"), b.get("element")
            if not isinstance(label, dict) or label.get("type") != "plain_text" or len(str(label.get("text"))) > 2000:
                return "input label: plain_text of at most 2000 characters"
            if not isinstance(el, dict) or el.get("type") not in INPUT_ELEMENTS or not el.get("action_id"):
                return "input element: a known type with an action_id"
            if el["type"] == "plain_text_input" and int(el.get("max_length", 3000)) > 3000:
                return "plain_text_input max_length: at most 3000"
            if el["type"] == "radio_buttons" and not 0 < len(el.get("options") or []) <= 10:
                return "radio_buttons: 1 to 10 options"
        elif b.get("type") == "section":
            text = b.get("text")
            if not isinstance(text, dict) or len(str(text.get("text"))) > 3000:
                return "section text: at most 3000 characters"
        elif b.get("type") == "context":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= 10:
                return "context: 1 to 10 elements"
            if any(not isinstance(e, dict) or len(str(e.get("text", ""))) > 3000 for e in elements):
                return "context element text: at most 3000 characters"
        elif b.get("type") not in ("divider", "header", "actions"):
            return f"block type {b.get('type')!r} not expected in a modal"
    if inputs and not isinstance(view.get("submit"), dict):
        return "a modal with inputs needs a submit button"
    return None
