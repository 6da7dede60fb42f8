"""The ids of the parent message's buttons and of the comment modal.

blocks.py renders the buttons with these ``action_id``s and values; the
intake (interact.py) parses them back. A button carries ids only, never agent
text: its ``value`` is compact JSON ``{"t": task_id, "r": run_id, "a":
approval_id, "d": digest}`` ("a" and "d", the digest of the question the
button was shown with, only for approvals; "r" when the run is known). A
click is judged against that very run and question: a stale button (a run
that ended, a question changed under the same id) is refused. No Slack
imports here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from spanvisor.events import Action

APPROVE: Final = "spanvisor.approve"
REJECT: Final = "spanvisor.reject"
# Opens the comment modal (views.open); its submission approves or rejects.
COMMENT: Final = "spanvisor.comment"
CANCEL: Final = "spanvisor.cancel"
# Opens a modal with the whole request (question, details, action), secrets
# masked: shown when the message had to cut any of it.
SHOW_FULL: Final = "spanvisor.show_full"
FULL_CALLBACK: Final = "spanvisor.full"
RETRY: Final = "spanvisor.retry"
ACKNOWLEDGE: Final = "spanvisor.acknowledge"

# The comment modal: its callback_id, its blocks' ids and the choice's values.
MODAL_CALLBACK: Final = "spanvisor.comment"
MODAL_CHOICE_BLOCK: Final = "spanvisor.choice"
MODAL_CHOICE_ACTION: Final = "spanvisor.choice"
MODAL_COMMENT_BLOCK: Final = "spanvisor.comment_text"
MODAL_COMMENT_ACTION: Final = "spanvisor.comment_text"
MAX_COMMENT = 500

# The button's action_id -> the decision it makes (COMMENT makes none itself).
ACTION_OF: Final[dict[str, Action]] = {
    APPROVE: "approve",
    REJECT: "reject",
    CANCEL: "cancel",
    RETRY: "retry",
    ACKNOWLEDGE: "acknowledge",
}
ACTION_IDS: Final = frozenset({*ACTION_OF, COMMENT, SHOW_FULL})
# Slack's limit on a button's value.
MAX_VALUE = 2000


@dataclass(frozen=True, slots=True)
class ButtonValue:
    task_id: str
    approval_id: str | None = None
    run_id: str = ""
    digest: str | None = None


def button_value(task_id: str, approval_id: str | None = None, run_id: str = "", digest: str | None = None) -> str:
    """The button's ``value``: ``{"t":…,"r":…,"a":…,"d":…}`` with no spaces."""
    value: dict[str, str] = {"t": task_id}
    if run_id:
        value["r"] = run_id
    if approval_id is not None:
        value["a"] = approval_id
    if digest:
        value["d"] = digest
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_value(raw: object) -> ButtonValue | None:
    """A button's (or the modal's private_metadata) ids; None if malformed."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_VALUE * 2:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    task_id, approval_id = data.get("t"), data.get("a")
    if not isinstance(task_id, str) or not task_id:
        return None
    if approval_id is not None and (not isinstance(approval_id, str) or not approval_id):
        return None
    run_id, digest = data.get("r", ""), data.get("d")
    if not isinstance(run_id, str) or (digest is not None and not isinstance(digest, str)):
        return None
    return ButtonValue(task_id, approval_id, run_id, digest or None)


__all__ = [
    "ACKNOWLEDGE",
    "ACTION_IDS",
    "ACTION_OF",
    "APPROVE",
    "CANCEL",
    "COMMENT",
    "FULL_CALLBACK",
    "MAX_COMMENT",
    "MODAL_CALLBACK",
    "MODAL_CHOICE_ACTION",
    "MODAL_CHOICE_BLOCK",
    "MODAL_COMMENT_ACTION",
    "MODAL_COMMENT_BLOCK",
    "REJECT",
    "RETRY",
    "SHOW_FULL",
    "ButtonValue",
    "button_value",
    "parse_value",
]
