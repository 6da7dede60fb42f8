"""The Approve and Reject buttons of a task's Telegram message.

What a button stands for, and why it carries only a token, is the shared
:mod:`spanvisor.chat.buttons`. Here: Telegram's form of it. Each button's
``callback_data`` (at most 64 bytes) is ``sv1:`` and the token; the entry
is kept under namespace ``telegram.buttons``. Telegram's clients may send
any ``callback_data`` on a bot's message (the Bot API says to trust none of
it): a token pressed in another chat than its own decides nothing.
"""

from __future__ import annotations

from typing import Any

from spanvisor.chat.buttons import Button, Rows
from spanvisor.chat.buttons import token_of as _token_of

PREFIX = "sv1:"
NAMESPACE = "telegram.buttons"
LABELS = {"approve": "✅ Approve", "reject": "❌ Reject", "show": "📄 Show all"}


def data(button: Button) -> str:
    return PREFIX + button.token


def token_of(callback_data: object) -> str | None:
    """The token of a press's ``callback_data``, or None when it is none of ours."""
    return _token_of(callback_data, PREFIX)


def keyboard(rows: Rows) -> dict[str, Any] | None:
    """Telegram's inline keyboard, each row numbered as the message numbers its request."""
    if not rows:
        return None
    return {
        "inline_keyboard": [
            [{"text": LABELS[b.action] + (f" {n}" if n else ""), "callback_data": data(b)} for b in row]
            for n, row in rows
        ]
    }
