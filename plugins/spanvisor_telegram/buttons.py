"""The Approve and Reject buttons of a task's message, and what each stands for.

A button's ``callback_data`` holds at most 64 bytes, too few for a task id,
a run, an approval id and the digest of what the person is shown. So each
button carries ``sv1:`` and a 22-character token, the SHA-256 of all of
those (and the chat and the action); what it stands for is kept in the state
store under the token (namespace ``telegram.buttons``) before the message
showing it is sent. The token is the same at every render, so an edit that
changes nothing else leaves the keyboard as it is.

Telegram's clients may send any ``callback_data`` on a bot's message (the
Bot API says to trust none of it): a token the store does not hold, or one
pressed in another chat than its own, decides nothing. What is decided is
what the stored entry says, digest included, never what the press says.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from spanvisor.events import ApprovalRequest, TaskView

PREFIX = "sv1:"
NAMESPACE = "telegram.buttons"
# Requests with buttons on one message: more wait their turn (each says so).
MAX_REQUESTS = 3
LABELS = {"approve": "✅ Approve", "reject": "❌ Reject", "show": "📄 Show all"}


@dataclass(frozen=True, slots=True)
class Button:
    chat: str
    task_id: str
    run_id: str
    approval_id: str
    digest: str
    action: str  # approve, reject, or show (the whole request, as replies)

    @property
    def token(self) -> str:
        raw = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:16]).decode().rstrip("=")

    @property
    def data(self) -> str:
        return PREFIX + self.token

    def stored(self) -> dict[str, Any]:
        return asdict(self)


def from_stored(value: Any) -> Button | None:
    """The button a stored entry stands for, or None when it is not one."""
    if not isinstance(value, dict):
        return None
    try:
        button = Button(**{k: str(value[k]) for k in Button.__dataclass_fields__})
    except (KeyError, TypeError):
        return None
    return button if button.action in LABELS else None


def token_of(data: object) -> str | None:
    """The token of a press's ``callback_data``, or None when it is none of ours."""
    if not isinstance(data, str) or not data.startswith(PREFIX):
        return None
    token = data[len(PREFIX) :]
    return token if len(token) == 22 and token.replace("-", "").replace("_", "").isalnum() else None


Rows = list[tuple[int | None, list[Button]]]


def buttons(view: TaskView, chat: str, whole: Callable[[ApprovalRequest], bool], shown: tuple[str, ...]) -> Rows:
    """A row per open request a person may answer here: one the message
    shows whole (``shown``), and not one a central rule denies (nobody may
    approve it); ``whole`` says which the message cuts (they get a button
    showing all of it)."""
    rows: Rows = []
    many = len(view.approvals) > 1
    for n, req in enumerate(view.approvals[:MAX_REQUESTS], 1):
        if req.policy_denied or req.approval_id not in shown:
            continue
        actions = [a for a in ("approve", "reject") if a in req.options or not req.options]
        if whole(req):
            actions.append("show")
        row = [Button(chat, view.task_id, view.run_id, req.approval_id, req.digest, a) for a in actions]
        if row:
            rows.append((n if many else None, row))
    return rows


def keyboard(rows: Rows) -> dict[str, Any] | None:
    """Telegram's inline keyboard, each row numbered as the message numbers its request."""
    if not rows:
        return None
    return {
        "inline_keyboard": [
            [{"text": LABELS[b.action] + (f" {n}" if n else ""), "callback_data": b.data} for b in row]
            for n, row in rows
        ]
    }
