"""What the Telegram sink keeps of one task beyond the shared record, and
which of its lines share a reply."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spanvisor.chat import record
from spanvisor.display.thread import ThreadLine

from .render import MAX_TEXT, line, units

# A task's replies in the state store, each by its key: posted once.
REPLIES = "telegram.reply"


@dataclass
class TelegramMessage(record.TaskMessage):
    topic: int | None = None  # its forum topic, in a forum chat


def next_batch(lines: Iterable[ThreadLine]) -> list[ThreadLine]:
    """The next reply's lines: progress lines folded while they fit one message
    (a busy group's 20 calls a minute go further)."""
    return record.next_batch(lines, lambda item: units(line(item)), MAX_TEXT)
