"""The Slack sink's record of one task: the view to show and what is owed to Slack.

``export`` only writes here (O(1) per event); a background worker per task
reads it and talks to Slack. Coalescing falls out of the shape: the parent
is a single "latest view + version", so 10,000 checkpoints between two edits
are one edit.

Which view is the latest is decided by :attr:`TaskView.seq`, the tracker's
per-task event number, not by time: clocks skew and timestamps tie, a
sequence does neither. See :meth:`SlackTaskRecord.offer`.

People's decisions usually arrive in the view (``TaskView.decisions``). A
decision on a task this process does not track, or on a finished one
(``HumanIntervention.known`` False), leaves the view alone: the sink notes it
with :meth:`SlackTaskRecord.note_decision`, and the parent shows the view
with the noted decisions merged in (:func:`with_decisions`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from spanvisor.display.thread import ThreadLine
from spanvisor.events import TERMINAL, Decision, Event, Status, TaskFinished, TaskView

from .worklog import WorkLog

SEEN_PER_TASK = 4096
MAX_PENDING_REPLIES = 1000
# Decisions a parent shows (as the tracker keeps in a view), and those a record notes.
SHOWN_DECISIONS = 5
MAX_NOTED = 20


def is_final(event: Event) -> bool:
    """TaskFinished, or any later event of a finished task (its view is final)."""
    v = event.task
    return isinstance(event, TaskFinished) or (v.ended_ns is not None and v.status in TERMINAL)


def merge_decisions(*groups: Iterable[Decision], keep: int = MAX_NOTED) -> tuple[Decision, ...]:
    """One list, each intervention once, oldest first, the newest ``keep``."""
    by_id = {d.intervention_id: d for g in groups for d in g}
    return tuple(sorted(by_id.values(), key=lambda d: (d.time_ns, d.intervention_id))[-keep:])


def with_decisions(view: TaskView, extra: Iterable[Decision]) -> TaskView:
    """``view`` as it reads once the ``extra`` decisions are applied: they join
    its decisions, an answered approval is no longer open, a cancel is
    requested. The tracker does the same for the decisions it applies; this is
    for those applied elsewhere or after the task finished."""
    have = {d.intervention_id for d in view.decisions}
    new = [d for d in extra if d.intervention_id not in have]
    if not new:
        return view
    answered = {d.approval_id for d in new if d.action in ("approve", "reject")}
    approvals = tuple(r for r in view.approvals if r.approval_id not in answered)
    status = view.status
    if status == "awaiting_approval" and not approvals:
        status = "working"
    return replace(
        view,
        decisions=merge_decisions(view.decisions, new, keep=SHOWN_DECISIONS),
        approvals=approvals,
        cancel_requested=view.cancel_requested or any(d.action == "cancel" for d in new),
        status=status,
    )


def parent_key(view: TaskView) -> str:
    """Which Slack parent a view belongs to: one per run of a task id. A task
    id reused by a new root (an orchestrator's retry of ``job-42``) is a new
    run (``TaskView.run_id``) and gets a parent of its own, never run 1's."""
    return f"{view.task_id}/{view.run_id}" if view.run_id else view.task_id


def former_key(view: TaskView) -> str | None:
    """The parent key the run had before its root named its own id
    (``TaskView.former_id``), or None: the run was never known by another id."""
    if view.former_id is None:
        return None
    return f"{view.former_id}/{view.run_id}" if view.run_id else view.former_id


def moved_to(value: Mapping[str, Any] | None) -> str | None:
    """The key a stored value says its run moved to (.rename), or None."""
    to = value.get("moved_to") if value is not None else None
    return to if isinstance(to, str) and to else None


Bar = tuple[tuple[str, str, str, str], ...]  # a code channel's context bar: (key, label, icon, url or "") per item


@dataclass(frozen=True, slots=True)
class Diff:
    """A task's newest diff (DiffUpdated), kept for its code channel's diff tab."""

    seq: int
    digest: str
    text: str
    files: int
    clipped: bool


@dataclass
class CodeState:
    """A task's code channel as its record knows it (.codechannels)."""

    channel: str | None  # the code channel's ID; None: the task stays in its routed channel
    session_id: str = ""
    team: str | None = None  # its routed channel, where the link line goes
    linked: bool = False
    bar_want: Bar | None = None  # the context bar the parent's last shown view maps to
    bar_sent: Bar | None = None
    # The channel's name as made (the task's title then, perhaps its id) and
    # the title the parent's last shown view gives, once the task has a name.
    title_sent: str | None = None
    title_want: str | None = None
    # Its work-log tab (.codetab): the blocks' text the parent's last shown
    # view gives, the last taken, and when (transport clock) it was last sent.
    tab_want: str | None = None
    tab_sent: str | None = None
    tab_at: float = float("-inf")
    # Its diff tab: the digest of the diff last taken, and when it was sent
    # (the diff itself waits on the record: SlackTaskRecord.diff).
    diff_sent: str | None = None
    diff_at: float = float("-inf")
    diff_view: str | None = None  # the diff tab's view_id, once made (to remove it)
    closed: bool = False

    def bar_due(self) -> bool:
        return self.channel is not None and not self.closed and self.bar_want not in (None, self.bar_sent)

    def title_due(self) -> bool:
        return self.channel is not None and not self.closed and self.title_want not in (None, self.title_sent)

    def diff_owed(self, diff: Diff | None) -> bool:
        return self.channel is not None and not self.closed and diff is not None and diff.digest != self.diff_sent

    def tab_owed(self) -> bool:
        return self.channel is not None and not self.closed and self.tab_want not in (None, self.tab_sent)

    def tab_due(self, now: float, interval: float, hurry: bool) -> bool:
        """Owed, and its interval since the last send passed (or no waiting: the end, a flush)."""
        return self.tab_owed() and (hurry or now >= self.tab_at + interval)


@dataclass(eq=False)
class SlackTaskRecord:
    view: TaskView
    channel: str | None  # the channel the parent goes to (name or ID), from routing
    # The parent key its state is kept under: the view's (parent_key) from its
    # first view on, changed only by its worker, between two steps, when its
    # run was renamed (.rename), so no store call of a step sees two keys.
    key: str = ""
    # What it kept under its former key (TaskView.former_id) is now under ``key`` (.rename).
    moved: bool = False
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
    # Decisions to show beyond the view's own (see note_decision), by intervention id.
    noted: dict[str, Decision] = field(default_factory=dict)
    decided_version: int = -1  # ``version`` when the last decision was noted
    offered: bool = False  # a view was offered: ``view`` is one of the task's own
    # Made for a decision only (no view offered): it never posts a parent, it
    # shows the decision on the one another replica or an earlier run posted.
    borrowed: bool = False
    orphan: bool = False  # borrowed, and the task has no parent to show it on
    log: WorkLog | None = None  # the open work log: tool and step lines gathered (.worklog)
    # Earlier logs with lines folded in and not shown yet: edited when edits allow.
    behind: list[WorkLog] = field(default_factory=list)
    # Open requests due a reminder (approval id -> when, on the sink's clock),
    # and those reminded (.remind).
    remind_at: dict[str, float] = field(default_factory=dict)
    reminded: set[str] = field(default_factory=set)
    # Slack's agent session of the thread (.sessions): the status the parent's
    # last edit here maps to, and the one Slack was last told (None: no session yet).
    session_want: str | None = None
    session_sent: str | None = None
    # A busy channel (.board): the tool and step lines folded into the parent
    # and the channel's board instead of the thread (counts and the newest),
    # and the task's last per-call line as it came (raw text).
    folded: WorkLog | None = None
    last_call: str | None = None
    # Its own code channel (.codechannels): None until it is decided where
    # its parent goes; the calls to make one that ended ambiguously.
    code: CodeState | None = None
    code_attempts: int = 0
    diff: Diff | None = None  # the newest diff of the task (by its view's seq), for a code channel's tab

    @property
    def task_id(self) -> str:
        return self.view.task_id

    def __post_init__(self) -> None:
        if not self.key:
            self.key = parent_key(self.view)

    @property
    def dirty(self) -> bool:
        return self.sent_version != self.version

    @property
    def needs_person(self) -> bool:
        """The task waits for a person's approval or failed: someone must see it now."""
        v = self.view
        return bool(v.approvals) or v.status in ("awaiting_approval", "error")

    @property
    def urgent(self) -> bool:
        """A status change or a person's decision goes out at once, whatever the interval."""
        return self.dirty and (self.view.status != self.sent_status or self.sent_version < self.decided_version)

    @property
    def session_due(self) -> bool:
        """The thread's agent session shows another status than the parent's last edit here."""
        return (
            self.session_want is not None
            and self.session_want != self.session_sent
            and self.ref is not None
            and not self.dead
        )

    @property
    def code_due(self) -> bool:
        """Its code channel owes Slack something: the team channel's line, the
        context bar, its name, its tab, or (once it finished) the channel's archiving."""
        c = self.code
        if c is None or c.channel is None or self.ref is None or self.dead:
            return False
        told = (not c.linked and c.team is not None) or c.bar_due() or c.title_due() or c.tab_owed()
        told = told or c.diff_owed(self.diff)
        return told or (self.finished and not c.closed)

    @property
    def idle(self) -> bool:
        if self.dead:
            return not self.busy
        shown = self.ref is not None or self.orphan
        logged = (self.log is None or not self.log.dirty) and not self.behind
        quiet = not self.replies and not self.alerts and not self.busy and not self.session_due and not self.code_due
        return shown and logged and not self.dirty and quiet

    @property
    def shown_view(self) -> TaskView:
        """What the parent shows of this record: its view with the noted decisions."""
        return with_decisions(self.view, self.noted.values())

    def note_decision(self, decision: Decision) -> bool:
        """Show an applied ``decision`` on the parent although the view did not
        change (``HumanIntervention.known`` False: a finished task, or one
        another replica tracks): marks the parent for an edit at once and
        wakes the worker. Idempotent on the intervention id; True when new.
        Replicas merge what they noted in the shared record (.shared)."""
        iid = decision.intervention_id
        if iid in self.noted or any(d.intervention_id == iid for d in self.view.decisions):
            return False
        self.noted[iid] = decision
        if len(self.noted) > MAX_NOTED:
            oldest = merge_decisions(self.noted.values())[0]
            del self.noted[oldest.intervention_id]
        if not self.offered:
            self.borrowed = True
        self.version += 1
        self.decided_version = self.version
        self.settled = False
        self.wake.set()
        return True

    def first_time(self, event_id: str) -> bool:
        if event_id in self.seen:
            return False
        self.seen[event_id] = None
        if len(self.seen) > SEEN_PER_TASK:
            self.seen.popitem(last=False)
        return True

    def offer(self, view: TaskView, final: bool) -> bool:
        """Keep ``view`` if it is newer than the one held; True when kept
        (and urgent when it brings a new decision).

        A final view (from TaskFinished) always replaces a non-final one and
        is never replaced by one. Otherwise the higher ``seq`` wins, and on a
        tie the later arrival: events of one task arrive in the order the
        tracker emitted them unless a replay or a replica mixes them, and a
        replay carries the same views again.
        """
        self.offered, self.borrowed, self.orphan = True, False, False
        keep = final if final != self.view_final else view.seq >= self.view.seq
        if keep:
            # A decision the tracker applied goes out at once, like one noted.
            decided = view.decisions[-1:] != self.view.decisions[-1:]
            self.view, self.view_final = view, final
            self.version += 1
            if decided:
                self.decided_version = self.version
        return keep
