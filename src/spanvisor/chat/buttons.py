"""A task message's Approve, Reject and "Show all" buttons, and what each
stands for, for any chat channel.

A button's payload is small on every channel (Telegram's ``callback_data``
holds 64 bytes) and, wherever it travels, the person's client may change
it. So a button carries only a 22-character token, the SHA-256 of what it
stands for (the place it is shown, the task, its run, the request, the
digest of what the person is shown, and the action); the entry is kept in
the state store under the token (the channel's namespace, e.g.
``telegram.buttons``) before the message showing it is sent. The token is
the same at every render, so an edit that changes nothing else leaves the
buttons as they are.

A token the store does not hold, or one pressed elsewhere than where it was
shown, decides nothing. What is decided is what the stored entry says,
digest included, never what the press says.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from spanvisor.events import ApprovalRequest, TaskView

# Requests with buttons on one message: more wait their turn (each says so).
MAX_REQUESTS = 3
ACTIONS = frozenset({"approve", "reject", "show"})
TOKEN_CHARS = 22


@dataclass(frozen=True, slots=True)
class Button:
    chat: str  # where it is shown: a Telegram chat, a Teams channel
    task_id: str
    run_id: str
    approval_id: str
    digest: str
    action: str  # approve, reject, or show (the whole request, as replies)

    @property
    def token(self) -> str:
        raw = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:16]).decode().rstrip("=")

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
    return button if button.action in ACTIONS else None


def token_of(data: object, prefix: str) -> str | None:
    """The token of a press's payload (``prefix`` then the token), or None when it is none of ours."""
    if not isinstance(data, str) or not data.startswith(prefix):
        return None
    token = data[len(prefix) :]
    ok = len(token) == TOKEN_CHARS and token.replace("-", "").replace("_", "").isalnum() and token.isascii()
    return token if ok else None


Rows = list[tuple[int | None, list[Button]]]


def buttons(view: TaskView, chat: str, whole: Callable[[ApprovalRequest], bool], shown: tuple[str, ...]) -> Rows:
    """A row per open request a person may answer here: one the message
    shows whole (``shown``), and not one a central rule denies (nobody may
    approve it); ``whole`` says which the message cuts (they get a button
    showing all of it). Rows are numbered as the message numbers its
    requests when it shows more than one."""
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
