"""What a chat sink keeps of one task's live message, and which of its
thread lines may share a reply."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from spanvisor.display.thread import ThreadLine
from spanvisor.events import TERMINAL, Event, TaskFinished, TaskView

MAX_PENDING_LINES = 1000
# Thread lines that may share a reply with the progress lines waiting next to
# them; a question, a failure, a decision and the summary each get their own.
FOLDS = frozenset(
    {"started", "milestone", "step", "tool", "artifact", "warning", "forecast", "budget", "stalled", "resumed"}
)
FOLD_MAX = 10


@dataclass
class TaskMessage:
    """One task's run as this process shows it. A channel adds what its
    messages need (Telegram a forum topic, Teams the thread's id)."""

    key: str
    chat: str  # where it shows: the channel's own name for a chat or channel
    view: TaskView
    final: bool = False
    lines: deque[ThreadLine] = field(default_factory=deque)
    message_id: str | None = None
    shown: str | None = None  # what the message holds, as the channel fingerprints it
    shown_status: str | None = None
    shown_asks: tuple[str, ...] = ()  # the requests it shows
    edited_at: float = float("-inf")
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Set with wake; a waiting reply's interrupt clears it (the pacer does), never wake.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    dead: bool = False  # the channel refused the message for good: nothing more is sent
    # False while the only events were decisions on a task this process does
    # not track: their view is ids only, never shown over the message's own.
    known: bool = True


def parent_key(view: TaskView) -> str:
    """One message per run of a task id (a reused id is a new run)."""
    return f"{view.task_id}/{view.run_id}" if view.run_id else view.task_id


def is_final(event: Event) -> bool:
    v = event.task
    return isinstance(event, TaskFinished) or (v.ended_ns is not None and v.status in TERMINAL)


def next_batch(lines: Iterable[ThreadLine], size: Callable[[ThreadLine], int], room: int) -> list[ThreadLine]:
    """The next reply's lines: the first waiting line, and the progress lines
    waiting right after it when it is one too (a busy chat's calls go
    further), as long as their ``size`` (one more each between them) fits
    in ``room``."""
    waiting = iter(lines)
    first = next(waiting)
    batch = [first]
    if first.kind not in FOLDS:
        return batch
    used = size(first)
    for item in itertools.islice(waiting, FOLD_MAX - 1):
        more = size(item) + 1
        if item.kind not in FOLDS or used + more > room:
            break
        batch.append(item)
        used += more
    return batch
