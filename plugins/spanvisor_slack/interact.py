"""Slack's interaction payloads made into what spanvisor acts on (no I/O here).

Four shapes come in, over Socket Mode or HTTP alike:

- ``block_actions``: a click on one of the parent's buttons (:mod:`.actions`);
  approve, reject, cancel, retry and acknowledge become a :class:`Click`
  carrying a :class:`~spanvisor.events.Decision`; *comment* becomes
  :class:`OpenComment` (the modal is opened with ``views.open``), *show
  full action* :class:`OpenFull` (a modal with the whole request);
- ``view_submission`` of the comment modal: a :class:`Click` with the comment;
- a slash command (``/spanvisor …``): a :class:`Command`;
- an Events API ``agent_session_stopped`` (Slack's own stop button on a
  task's agent session, :mod:`.sessions`): a :class:`Stop`.

A click's ``intervention_id`` is ``stable_id("slack", message ts or view id,
action_ts, user id, action_id)``: the same for a retried or replayed payload
and for one click delivered to two replicas, so it is recorded once. Every id
read from a payload is checked for shape; anything else is ignored.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from spanvisor.display.readable import DECISION_STYLE, decided
from spanvisor.events import Action, Decision, stable_id

from . import actions as A
from .text import clip, escape

# Slack's ids: users U…/W…, channels C…/G…/D…; lengths are generous.
_USER = re.compile(r"[UW][A-Z0-9]{2,20}")
_CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,20}")
_TS = re.compile(r"\d{1,12}\.\d{1,9}")
MAX_TEXT = 500  # a slash command's text we read at most


@dataclass(frozen=True, slots=True)
class Where:
    """Where and to whom an answer goes."""

    user_id: str
    channel_id: str | None = None
    channel_name: str | None = None
    response_url: str | None = None


@dataclass(frozen=True, slots=True)
class Click:
    decision: Decision
    where: Where

    @property
    def key(self) -> str:
        return self.decision.intervention_id


@dataclass(frozen=True, slots=True)
class OpenComment:
    task_id: str
    approval_id: str | None
    trigger_id: str
    where: Where
    key: str
    run_id: str = ""
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class OpenFull:
    """*Show full action*: the whole request in a modal (no decision)."""

    task_id: str
    approval_id: str
    trigger_id: str
    where: Where
    key: str
    run_id: str = ""


@dataclass(frozen=True, slots=True)
class Command:
    text: str
    user_name: str | None
    trigger_id: str | None
    where: Where
    key: str


@dataclass(frozen=True, slots=True)
class Stop:
    """A press of Slack's stop button on an agent session (``agent_session_stopped``)."""

    channel_id: str
    thread_ts: str  # the session's thread: the task's parent message ("": a code channel's own session)
    user_id: str
    time_ns: int
    key: str


Interaction = Click | OpenComment | OpenFull | Command | Stop


def _s(x: Any, key: str) -> str | None:
    v = x.get(key) if isinstance(x, Mapping) else None
    return v if isinstance(v, str) and v else None


def _time_ns(action_ts: str | None) -> int:
    """The click's time from Slack's ``action_ts`` (the same on every replica),
    else now."""
    if action_ts and _TS.fullmatch(action_ts):
        try:
            return int(Decimal(action_ts) * 1_000_000_000)
        except InvalidOperation:
            pass
    return time.time_ns()


def _user(payload: Mapping[str, Any]) -> tuple[str, str | None] | None:
    user = payload.get("user")
    uid = _s(user, "id")
    if uid is None or not _USER.fullmatch(uid):
        return None
    return uid, _s(user, "name") or _s(user, "username")


def parse_interactive(payload: Mapping[str, Any]) -> list[Interaction]:
    """What a ``block_actions`` or ``view_submission`` payload asks of us;
    [] for anything that is not ours or is malformed."""
    kind = payload.get("type")
    if kind == "block_actions":
        return list(_block_actions(payload))
    if kind == "view_submission":
        click = _submission(payload)
        return [click] if click is not None else []
    return []


def _block_actions(payload: Mapping[str, Any]) -> list[Interaction]:
    who = _user(payload)
    if who is None:
        return []
    uid, name = who
    container = payload.get("container")
    channel = payload.get("channel")
    cid = _s(container, "channel_id") or _s(channel, "id")
    where = Where(
        uid,
        cid if cid and _CHANNEL.fullmatch(cid) else None,
        _s(channel, "name"),
        _s(payload, "response_url"),
    )
    message_ts = _s(container, "message_ts") or _s(payload.get("message"), "ts") or ""
    out: list[Interaction] = []
    raw_actions = payload.get("actions")
    for act in raw_actions if isinstance(raw_actions, list) else ():
        action_id = _s(act, "action_id")
        if action_id not in A.ACTION_IDS:
            continue
        value = A.parse_value(_s(act, "value"))
        if value is None:
            continue
        action_ts = _s(act, "action_ts") or ""
        iid = stable_id("slack", message_ts, action_ts, uid, action_id)
        if action_id == A.SHOW_FULL:
            trigger = _s(payload, "trigger_id")
            if trigger is not None and value.approval_id is not None:
                out.append(OpenFull(value.task_id, value.approval_id, trigger, where, iid, value.run_id))
            continue
        if action_id == A.COMMENT:
            trigger = _s(payload, "trigger_id")
            if trigger is not None and value.approval_id is not None:
                out.append(
                    OpenComment(value.task_id, value.approval_id, trigger, where, iid, value.run_id, value.digest)
                )
            continue
        action: Action = A.ACTION_OF[action_id]
        if action in ("approve", "reject") and value.approval_id is None:
            continue
        d = Decision(
            intervention_id=iid,
            task_id=value.task_id,
            action=action,
            actor_id=uid,
            time_ns=_time_ns(action_ts),
            approval_id=value.approval_id if action in ("approve", "reject") else None,
            actor_name=name,
            source="slack",
            verified=True,  # Slack's signed (or Socket Mode's authenticated) user
            run_id=value.run_id,
            digest=value.digest if action in ("approve", "reject") else None,
        )
        out.append(Click(d, where))
    return out


def _submission(payload: Mapping[str, Any]) -> Click | None:
    who = _user(payload)
    view = payload.get("view")
    if who is None or not isinstance(view, Mapping) or view.get("callback_id") != A.MODAL_CALLBACK:
        return None
    uid, name = who
    meta = _s(view, "private_metadata")
    value = A.parse_value(meta)
    view_id = _s(view, "id")
    if value is None or value.approval_id is None or view_id is None:
        return None
    extra = json.loads(meta) if meta else {}
    cid = extra.get("c") if isinstance(extra.get("c"), str) and _CHANNEL.fullmatch(extra["c"]) else None
    cname = extra.get("n") if isinstance(extra.get("n"), str) else None
    state = view.get("state")
    values = state.get("values") if isinstance(state, Mapping) else None
    values = values if isinstance(values, Mapping) else {}
    choice = (values.get(A.MODAL_CHOICE_BLOCK) or {}).get(A.MODAL_CHOICE_ACTION) or {}
    picked = _s(choice.get("selected_option") if isinstance(choice, Mapping) else None, "value")
    if picked not in ("approve", "reject"):
        return None
    typed = (values.get(A.MODAL_COMMENT_BLOCK) or {}).get(A.MODAL_COMMENT_ACTION) or {}
    comment = _s(typed, "value") if isinstance(typed, Mapping) else None
    action: Action = "approve" if picked == "approve" else "reject"
    d = Decision(
        intervention_id=stable_id("slack", view_id, "", uid, A.MODAL_CALLBACK),
        task_id=value.task_id,
        action=action,
        actor_id=uid,
        time_ns=time.time_ns(),
        approval_id=value.approval_id,
        actor_name=name,
        comment=comment[: A.MAX_COMMENT] if comment else None,
        source="slack",
        verified=True,
        run_id=value.run_id,
        digest=value.digest,
    )
    return Click(d, Where(uid, cid, cname, None))


def parse_event(envelope: Mapping[str, Any]) -> Stop | None:
    """An Events API delivery (an ``event_callback``, over HTTP or Socket
    Mode) that is ours: a press of an agent session's stop button. Its key
    is the delivery's ``event_id``, the same in each of Slack's retries."""
    if envelope.get("type") != "event_callback":
        return None
    ev = envelope.get("event")
    if not isinstance(ev, Mapping) or ev.get("type") != "agent_session_stopped":
        return None
    uid, cid, ts = _s(ev, "user"), _s(ev, "channel"), _s(ev, "thread_ts")
    if uid is None or not _USER.fullmatch(uid) or cid is None or not _CHANNEL.fullmatch(cid):
        return None
    if ts is not None and not _TS.fullmatch(ts):
        return None
    ts = ts or ""  # none: a code channel's own session (.sessions)
    event_ts = _s(ev, "event_ts") or ""
    key = stable_id("slack.stop", _s(envelope, "event_id") or event_ts, uid, cid, ts)
    return Stop(cid, ts, uid, _time_ns(event_ts), key)


def parse_command(fields: Mapping[str, Any]) -> Command | None:
    """A slash command's form fields (HTTP) or Socket Mode payload."""
    uid = _s(fields, "user_id")
    if uid is None or not _USER.fullmatch(uid):
        return None
    cid = _s(fields, "channel_id")
    text = str(fields.get("text") or "")[:MAX_TEXT]
    trigger = _s(fields, "trigger_id")
    key = stable_id("slack.command", trigger or "", uid, cid or "", text)
    where = Where(
        uid, cid if cid and _CHANNEL.fullmatch(cid) else None, _s(fields, "channel_name"), _s(fields, "response_url")
    )
    return Command(text.strip(), _s(fields, "user_name"), trigger, where, key)


# --- what we send back ------------------------------------------------------


def applied_text(d: Decision) -> str:
    what = f" `{escape(d.approval_id)}`" if d.approval_id else ""
    emoji, done = DECISION_STYLE[d.action][:2]
    return clip(f"{emoji} {done}{what} · task `{escape(d.task_id)}`", 2900)


def prior_text(prior: Decision) -> str:
    """ "already approved by @alice": a Slack user as a mention (an id we
    checked), anyone else by their escaped name."""
    if prior.source == "slack" and _USER.fullmatch(prior.actor_id):
        by = f"<@{prior.actor_id}>"
    else:
        by = escape(prior.actor_name or prior.actor_id)
    return f"already {decided(prior.action)} by {by}"


def comment_modal(
    task_id: str, approval_id: str, where: Where, question: str | None, run_id: str = "", digest: str | None = None
) -> dict[str, Any]:
    """The comment modal: approve or reject, with a comment (ids and the
    question's digest only in ``private_metadata``; the question, when known
    here, escaped)."""
    meta: dict[str, str] = {"t": task_id, "a": approval_id}
    if run_id:
        meta["r"] = run_id
    if digest:
        meta["d"] = digest
    if where.channel_id:
        meta["c"] = where.channel_id
    if where.channel_name and len(where.channel_name) <= 80:
        meta["n"] = where.channel_name
    blocks: list[dict[str, Any]] = []
    if question:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(escape(question), 2900)}})
    blocks += [
        {
            "type": "input",
            "block_id": A.MODAL_CHOICE_BLOCK,
            "label": {"type": "plain_text", "text": "Decision"},
            "element": {
                "type": "radio_buttons",
                "action_id": A.MODAL_CHOICE_ACTION,
                "options": [
                    {"text": {"type": "plain_text", "text": "Approve"}, "value": "approve"},
                    {"text": {"type": "plain_text", "text": "Reject"}, "value": "reject"},
                ],
            },
        },
        {
            "type": "input",
            "block_id": A.MODAL_COMMENT_BLOCK,
            "optional": True,
            "label": {"type": "plain_text", "text": "Comment"},
            "element": {
                "type": "plain_text_input",
                "action_id": A.MODAL_COMMENT_ACTION,
                "multiline": True,
                "max_length": A.MAX_COMMENT,
            },
        },
    ]
    return {
        "type": "modal",
        "callback_id": A.MODAL_CALLBACK,
        "private_metadata": json.dumps(meta, separators=(",", ":")),
        "title": {"type": "plain_text", "text": "Approval"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


__all__ = [
    "Click",
    "Command",
    "Interaction",
    "OpenComment",
    "OpenFull",
    "Where",
    "applied_text",
    "comment_modal",
    "parse_command",
    "parse_interactive",
    "prior_text",
]
