"""A request nobody answered, asked again: after ``SPANVISOR_WAITING_REMIND``
(10 minutes unless set; ``off``) an open approval request is posted again in
its task's thread, mentioning who can answer it, once per request (the
reply's key is claimed in the state store like any thread line, so replicas
post it once).

Never for a request answered, cancelled with its task, ended with it, or
one a central rule denies: each is looked at again right before the line is
queued. At most one reminder per request, ever (``reminded``), so at most
one per interval; the line goes through the thread's pacing and Slack's
per-channel budget like any other reply.

Who is mentioned: the request's own ``approvers_from`` where an entry is a
Slack id (a person ``U…``/``W…``, a group ``group:S…``); else the approvers
configured for the task's channel (``SPANVISOR_SLACK_CHANNEL_APPROVERS``),
else ``SPANVISOR_SLACK_APPROVERS``. A group handle (``@oncall``) is named
as text: only an id makes a mention. Nobody configured: the reminder
mentions no one.

A request's age is counted from when it was made (its ``requested_ns``,
wall clock); the task's worker sleeps until the next reminder is due and
stays up for it (:mod:`.worker`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from spanvisor.display.thread import ThreadLine
from spanvisor.events import ApprovalRequest

from .record import SlackTaskRecord

DEFAULT_REMIND_S = 600.0
# What a mention is made of: a user (U…/W…) or a user group (S…) id.
_PERSON = re.compile(r"[UW][A-Z0-9]{2,}")
_GROUP = re.compile(r"S[A-Z0-9]{2,}")
_HANDLE = re.compile(r"@[a-z0-9][a-z0-9._-]{0,79}")


def mention(entry: str) -> str | None:
    """``<@U012>``, ``<!subteam^S0AB>``, ``@oncall`` as text; None for
    anything else (a name of the identity provider Slack does not know)."""
    who = entry[6:] if entry.startswith("group:") else entry
    if _PERSON.fullmatch(who):
        return f"<@{who}>"
    if _GROUP.fullmatch(who):
        return f"<!subteam^{who}>"
    if _HANDLE.fullmatch(who):
        return who
    return None


@dataclass
class Reminders:
    after_s: float = DEFAULT_REMIND_S
    approvers: tuple[str, ...] = ()
    channel_approvers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def on(self) -> bool:
        return self.after_s > 0

    def track(self, st: SlackTaskRecord, now: float) -> None:
        """Note when each open request of the task is due a reminder (on the
        sink's clock, ``now``); forget those no longer open, and all of them
        once the task is cancelled or over."""
        if not self.on:
            return
        open_now = self._open(st)
        for aid in [a for a in st.remind_at if a not in open_now]:
            del st.remind_at[aid]
        wall = time.time_ns()
        for aid, r in open_now.items():
            if aid in st.reminded or aid in st.remind_at:
                continue
            made = r.requested_ns or wall
            st.remind_at[aid] = now + max(0.0, (made - wall) / 1e9 + self.after_s)

    @staticmethod
    def _open(st: SlackTaskRecord) -> dict[str, ApprovalRequest]:
        """The requests a person can still answer: none on a task cancelled
        or over, none a central rule denies (nobody may approve those)."""
        view = st.shown_view
        if view.ended_ns is not None or view.cancel_requested or st.finished or st.dead:
            return {}
        return {r.approval_id: r for r in view.approvals if not r.policy_denied}

    def due(self, st: SlackTaskRecord) -> float:
        return min(st.remind_at.values(), default=float("inf"))

    def take(self, st: SlackTaskRecord, now: float) -> list[ThreadLine]:
        """The reminders due now, each once."""
        out: list[ThreadLine] = []
        asked = self._open(st)  # looked at again: a decision may have come since it was noted
        for aid, at in sorted(st.remind_at.items(), key=lambda x: x[1]):
            if at > now:
                continue
            del st.remind_at[aid]
            st.reminded.add(aid)
            req = asked.get(aid)
            if req is None:
                continue
            waited = _minutes(self.after_s)
            out.append(
                ThreadLine(
                    f"remind:{aid}",
                    "approval",
                    "⏰",
                    f"Still waiting for a decision after {waited}",
                    req.question,
                    key=f"remind:{aid}",
                    mentions=self.who(st, req.approvers_from),
                )
            )
        return out

    def who(self, st: SlackTaskRecord, approvers_from: tuple[str, ...]) -> tuple[str, ...]:
        """The mentions of a request's approvers (see the module's doc)."""
        own = tuple(m for m in (mention(e) for e in approvers_from) if m is not None)
        if own:
            return tuple(dict.fromkeys(own))
        configured = self.channel_approvers.get(st.channel or "", self.approvers)
        return tuple(dict.fromkeys(m for m in (mention(e) for e in configured) if m is not None))


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    minutes = seconds / 60
    return f"{minutes:g} min"


__all__ = ["DEFAULT_REMIND_S", "Reminders", "mention"]
