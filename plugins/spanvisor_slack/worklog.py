"""A task's work log: its tool calls and step changes gathered into one
thread message, edited in place.

Slack takes about one post per second per channel. A task that calls
hundreds of tools used to queue a reply for every ten of them, and its
thread fell minutes behind while its milestones, warnings and the next
tasks' replies waited in the same queue. Now a task's tool and step lines
are one reply: the first is posted where it happens in the thread, and the
rest are folded into it and shown by editing it at most once per update
interval (``chat.update``, which takes no turn in the channel's posts). The
log counts every call and shows the newest lines; milestones, warnings,
decisions, errors and the summary are still replies of their own, in order,
so the thread reads as the task's story with its work log near the top.

Each folded line is claimed and settled like any reply (its value names the
log's ``ts``), so a replica or a restart never posts it again. What a log
shows is what this process folded into it: a replica that holds part of a
task keeps a log of its own, and a restarted process starts a new one with
its next tool call. A process that stops before its next edit leaves the
log as its last edit showed it (the calls are in the event stream and the
audit trail all the same). An edit Slack refuses for good (the reply was
deleted) closes the log, counted in ``spanvisor_dropped_total
{reason="slack_worklog_edit"}``; the next call starts another.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from spanvisor.display.thread import ThreadLine

# The kinds of line a work log gathers.
GATHERED = frozenset({"tool", "step"})
# The newest lines a log shows below its count; older ones are counted.
SHOWN = 8
# Lines folded in one pass (a backlog is folded over several passes).
FOLD_MAX = 200


@dataclass
class WorkLog:
    """The open work log of one task: counts and its newest lines, so a task
    with thousands of calls holds no more than :data:`SHOWN` of them."""

    ts: str
    first_id: str  # the event id of its first line: names the count line
    lines: int = 0  # lines folded into it, the posted ones included
    shown: int = 0  # how many of them Slack shows (posted or edited)
    open: bool = True  # False after an edit Slack refused for good
    last_edit: float = float("-inf")  # transport clock
    newest: deque[ThreadLine] = field(default_factory=lambda: deque(maxlen=SHOWN))
    tools: Counter[str] = field(default_factory=Counter)  # calls by tool name
    title: str = "Work log"  # how its count line starts
    steps: int = 0
    others: int = 0  # other progress lines folded in (milestones, artifacts, forecasts: .board)

    @classmethod
    def posted(cls, ts: str, lines: list[ThreadLine], now: float) -> WorkLog:
        """The log a reply of ``lines`` opened."""
        log = cls(ts, lines[0].event_id, last_edit=now)
        for line in lines:
            log.add(line)
        log.shown = log.lines
        return log

    @property
    def dirty(self) -> bool:
        return self.shown != self.lines

    def add(self, line: ThreadLine) -> None:
        self.lines += 1
        self.newest.append(line)
        if line.kind == "step":
            self.steps += 1
        elif line.kind == "tool":
            self.tools[(line.detail or "tool").split(" (")[0]] += 1
        else:
            self.others += 1

    def said(self) -> str:
        """``37 tool calls, 2 step changes``: what it holds, in words."""
        calls = sum(self.tools.values())
        parts = [f"{calls} tool call{'s' if calls != 1 else ''}"] if calls or not (self.steps or self.others) else []
        if self.steps:
            parts.append(f"{self.steps} step change{'s' if self.steps != 1 else ''}")
        if self.others:
            parts.append(f"{self.others} other update{'s' if self.others != 1 else ''}")
        return ", ".join(parts)

    def view(self, headed: bool = False) -> list[ThreadLine]:
        """The lines to render: a count of the whole log (when it holds more
        than it shows, or ``headed``), then its newest lines."""
        newest = list(self.newest)
        if self.lines <= SHOWN and not headed:
            return newest
        top = ", ".join(f"{name} x{n}" for name, n in self.tools.most_common(4))
        head = ThreadLine(
            f"worklog:{self.first_id}",
            "tool",
            "🗒️",
            f"{self.title}: {self.said()}",
            f"{top}; the newest {len(newest)} below" if top else f"the newest {len(newest)} below",
        )
        return [head, *newest]


__all__ = ["FOLD_MAX", "GATHERED", "SHOWN", "WorkLog"]
