"""The Slack sink's record of one task: the view to show and what is owed to Slack.

``export`` only writes here (O(1) per event); a background worker per task
reads it and talks to Slack. Coalescing falls out of the shape: the parent
is a single "latest view + version", so 10,000 checkpoints between two edits
are one edit.

Which view is the latest is decided by :attr:`TaskView.seq`, the tracker's
per-task event number, not by time: clocks skew and timestamps tie, a
sequence does neither. See :meth:`SlackTaskRecord.offer`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from spanvisor.events import Status, TaskView
from spanvisor.presentation import ThreadLine

SEEN_PER_TASK = 4096
MAX_PENDING_REPLIES = 1000


@dataclass(eq=False)
class SlackTaskRecord:
    view: TaskView
    channel: str | None  # the channel the parent goes to (name or ID), from routing
    view_final: bool = False  # ``view`` came with TaskFinished
    version: int = 0
    sent_version: int = -1
    sent_status: Status | None = None
    ref: tuple[str, str] | None = None  # (channel ID, ts) of the parent
    last_update: float = float("-inf")
    last_reply: float = float("-inf")
    replies: deque[ThreadLine] = field(default_factory=deque)
    alerts: deque[str] = field(default_factory=deque)  # statuses with a routed channel
    alerted: set[str] = field(default_factory=set)
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    finished: bool = False
    dead: bool = False
    # The shared record (see .shared) is final and shown: nothing more to do
    # here unless new events come.
    settled: bool = False
    # Edit again from the shared view: ours may have landed after a newer one.
    repair: bool = False
    not_before: float = float("-inf")  # a coalesced edit waits until then (transport clock)
    last_event: float | None = None  # when the sink last took an event (transport clock)
    busy: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None

    @property
    def task_id(self) -> str:
        return self.view.task_id

    @property
    def dirty(self) -> bool:
        return self.sent_version != self.version

    @property
    def urgent(self) -> bool:
        """A status change goes out at once, whatever the interval."""
        return self.dirty and self.view.status != self.sent_status

    @property
    def idle(self) -> bool:
        if self.dead:
            return not self.busy
        return self.ref is not None and not self.dirty and not self.replies and not self.alerts and not self.busy

    def first_time(self, event_id: str) -> bool:
        if event_id in self.seen:
            return False
        self.seen[event_id] = None
        if len(self.seen) > SEEN_PER_TASK:
            self.seen.popitem(last=False)
        return True

    def offer(self, view: TaskView, final: bool) -> bool:
        """Keep ``view`` if it is newer than the one held; True when kept.

        A final view (from TaskFinished) always replaces a non-final one and
        is never replaced by one. Otherwise the higher ``seq`` wins, and on a
        tie the later arrival: events of one task arrive in the order the
        tracker emitted them unless a replay or a replica mixes them, and a
        replay carries the same views again.
        """
        keep = final if final != self.view_final else view.seq >= self.view.seq
        if keep:
            self.view, self.view_final = view, final
            self.version += 1
        return keep
