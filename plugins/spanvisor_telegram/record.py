"""What the Telegram sink keeps of one task, and which of its lines share a reply."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from spanvisor.display.thread import ThreadLine
from spanvisor.events import TERMINAL, Event, TaskFinished, TaskView

from .render import MAX_TEXT, line, units

MAX_PENDING_LINES = 1000
# A task's replies in the state store, each by its key: posted once.
REPLIES = "telegram.reply"
# Thread lines that may share a reply with the progress lines waiting next to
# them; a question, a failure, a decision and the summary each get their own.
FOLDS = frozenset(
    {"started", "milestone", "step", "tool", "artifact", "warning", "forecast", "budget", "stalled", "resumed"}
)
FOLD_MAX = 10


@dataclass
class TaskMessage:
    """One task's run as this process shows it."""

    key: str
    chat: str
    view: TaskView
    final: bool = False
    lines: deque[ThreadLine] = field(default_factory=deque)
    message_id: int | None = None
    shown: tuple[str, str] | None = None  # the text and keyboard the message holds
    shown_status: str | None = None
    shown_asks: tuple[str, ...] = ()  # the requests it shows
    edited_at: float = float("-inf")
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Set with wake; a waiting reply's interrupt clears it (the pacer does), never wake.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    dead: bool = False  # Telegram refused the message for good: nothing more is sent
    # False while the only events were decisions on a task this process does
    # not track: their view is ids only, never shown over the message's own.
    known: bool = True
    topic: int | None = None  # its forum topic, in a forum chat


def parent_key(view: TaskView) -> str:
    """One message per run of a task id (a reused id is a new run)."""
    return f"{view.task_id}/{view.run_id}" if view.run_id else view.task_id


def is_final(event: Event) -> bool:
    v = event.task
    return isinstance(event, TaskFinished) or (v.ended_ns is not None and v.status in TERMINAL)


def next_batch(lines: Iterable[ThreadLine]) -> list[ThreadLine]:
    """The next reply's lines: the first waiting line, and the progress lines
    waiting right after it when it is one too (a busy chat's 20 calls a minute
    go further), as long as they fit one message."""
    waiting = iter(lines)
    first = next(waiting)
    batch = [first]
    if first.kind not in FOLDS:
        return batch
    size = units(line(first))
    for item in itertools.islice(waiting, FOLD_MAX - 1):
        more = units(line(item)) + 1
        if item.kind not in FOLDS or size + more > MAX_TEXT:
            break
        batch.append(item)
        size += more
    return batch
