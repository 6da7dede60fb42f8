"""Which events become lines in a task's thread, and what each line says:
shared by the console and Slack sinks, so both show the same lines. Plain
checkpoints make none; a milestone, a step, a failed tool, a warning, a
person's decision or the task's end each make one, keyed so a replay never
posts it twice. Text that came from spans or people is returned raw; each
sink escapes it for its medium.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from spanvisor.display.readable import (
    DECISION_STYLE,
    actor,
    corrected_text,
    decision_detail,
    decision_text,
    denied_text,
    duration,
    log_tail_text,
    results,
    tool_step,
    usd,
)
from spanvisor.display.task import STATUS_STYLE, summary_text
from spanvisor.events import (
    ArtifactAdded,
    BudgetWarning,
    Checkpoint,
    ContextForecast,
    ContextWarning,
    Decision,
    Event,
    HumanIntervention,
    TaskCorrected,
    TaskFinished,
    TaskResumed,
    TaskStalled,
    TaskStarted,
)

TOOL_FAILED = "Tool failed"  # the summary of a failed tool's line (a sink may show only those)
# A Checkpoint's attribute naming a request closed with no person's answer:
# the server's expiry, or its agent giving up (tracking/approvals.py).
EXPIRED_APPROVAL, UNANSWERED_APPROVAL = "expired_approval", "unanswered_approval"


LineKind = Literal[
    "started",
    "milestone",
    "step",
    "tool",
    "warning",
    "forecast",
    "budget",
    "stalled",
    "resumed",
    "error",
    "artifact",
    "summary",
    "approval",
    "unanswered",
    "intervention",
    "denied",
    "corrected",
]


@dataclass(frozen=True, slots=True)
class ThreadLine:
    event_id: str
    kind: LineKind
    emoji: str
    summary: str  # ours: safe to show as is
    detail: str | None = None  # from spans: escape before showing
    code: str | None = None  # from spans: a stack trace, shown as a code block
    broadcast: bool = False
    # What makes this line unique within its task, stable across replays and
    # restarts: a milestone is posted once however many checkpoints cross it.
    key: str = ""
    # A person's decision (kinds intervention and denied): a medium that can
    # show the actor as a mention rebuilds the summary with decision_text or
    # denied_text; ``summary`` names them as plain text.
    decision: Decision | None = None
    # (approvals counted, approvals needed) of a request several people approve.
    tally: tuple[int, int] | None = None
    # name/value pairs (result fields), raw. ``summary`` has them as text;
    # ``lead`` is the summary without them, for media that show them as fields.
    fields: tuple[tuple[str, str], ...] = ()
    lead: str | None = None
    # The task's last log lines (already redacted by the producer), raw, oldest first.
    logs: str | None = None
    # Who the line calls on, in the medium's own syntax (Slack's <@U…>, made
    # only from ids the settings or a request name): shown as they are.
    mentions: tuple[str, ...] = ()

    @property
    def reply_key(self) -> str:
        return self.key or f"{self.kind}:{self.event_id}"


@dataclass
class _TaskLines:
    milestone: float = -1.0
    step: str | None = None
    # Open requests with an "Approval needed" line: approval id -> question.
    asked: dict[str, str] = field(default_factory=dict)


@dataclass
class ThreadPolicy:
    """Decides which events become thread lines; plain checkpoints do not.

    One instance per sink. State per task is small and evicted on finish.
    Every line's ``event_id`` is the causing event's, so a sink can dedupe.
    """

    milestones: tuple[float, ...] = (25.0, 50.0, 75.0, 100.0)
    broadcast_errors: bool = False
    broadcast_critical: bool = False
    max_tasks: int = 100_000
    _tasks: dict[str, _TaskLines] = field(default_factory=dict)

    def lines(self, event: Event) -> list[ThreadLine]:
        if isinstance(event, HumanIntervention):
            # Keeps no state: a decision may come for a task long finished.
            return [intervention_line(event)]
        if isinstance(event, TaskCorrected):  # after its task's end: no state either
            return [
                ThreadLine(event.event_id, "corrected", "🧾", corrected_text(event), key=f"corrected:{event.span_id}")
            ]
        st = self._tasks.get(event.task_id)
        if st is None and event.task.former_id is not None:
            # Renamed by its root (TaskView.former_id): the lines it had go on
            # under its new id, so a milestone or step is not said twice.
            st = self._tasks.pop(event.task.former_id, None)
            if st is not None:
                self._tasks[event.task_id] = st
        if st is None:
            while len(self._tasks) >= self.max_tasks:
                # Oldest first (dicts keep insertion order); at worst a
                # forgotten task repeats a step line, milestones are keyed.
                self._tasks.pop(next(iter(self._tasks)))
            st = self._tasks[event.task_id] = _TaskLines()
        v = event.task
        out: list[ThreadLine] = []
        if isinstance(event, TaskStarted):
            return out
        if isinstance(event, Checkpoint):
            if event.source == "tool_call":
                step, error = tool_step(event.attributes)
                if error:
                    return [ThreadLine(event.event_id, "tool", "⚠️", TOOL_FAILED, f"{step}: {error}")]
                return [ThreadLine(event.event_id, "tool", "🔧", "Tool", step)]
            reached = [m for m in self.milestones if v.progress is not None and v.progress >= m > st.milestone]
            if reached:
                st.milestone = reached[-1]
                out.append(
                    ThreadLine(
                        event.event_id,
                        "milestone",
                        "📍",
                        f"{reached[-1]:.0f}% reached",
                        v.message,
                        key=f"milestone:{reached[-1]:g}",
                    )
                )
            if v.step and v.step != st.step and "step" in event.changed:
                st.step = v.step
                if not reached:
                    out.append(ThreadLine(event.event_id, "step", "➡️", "Step", v.step))
            if "approvals" in event.changed:
                out.extend(
                    ThreadLine(
                        event.event_id, "approval", "✋", "Approval needed", r.question, key=f"approval:{r.approval_id}"
                    )
                    for r in v.approvals
                    if r.approval_id not in st.asked
                )
                out.extend(_unanswered(event, st.asked))
                # Only the open ones: a closed request never reopens (the tracker's rule).
                st.asked = {r.approval_id: r.question for r in v.approvals}
        elif isinstance(event, ContextWarning):
            critical = event.level == "critical"
            out.append(
                ThreadLine(
                    event.event_id,
                    "warning",
                    "🔴" if critical else "🟠",
                    f"Context window {event.ratio:.0%} full ({event.tokens:,} / {event.limit:,} tokens)"
                    f", past the {event.threshold:.0%} {event.level} level",
                    v.model,
                    broadcast=critical and self.broadcast_critical,
                )
            )
        elif isinstance(event, ContextForecast):
            eta = f" (~{duration(event.eta_s)})" if event.eta_s is not None and event.eta_s >= 1 else ""
            calls = f"{event.calls} call{'s' if event.calls != 1 else ''}"
            out.append(
                ThreadLine(
                    event.event_id,
                    "forecast",
                    "🔮",
                    f"Context at {event.ratio:.0%}: at this rate, {event.threshold:.0%} in about {calls}{eta}",
                    v.model,
                    key=f"forecast:{event.event_id}",
                )
            )
        elif isinstance(event, BudgetWarning):
            out.append(budget_line(event))
        elif isinstance(event, TaskStalled):
            out.append(
                ThreadLine(event.event_id, "stalled", "⏸️", f"No activity for {duration(event.idle_s)}", v.message)
            )
        elif isinstance(event, TaskResumed):
            out.append(ThreadLine(event.event_id, "resumed", "▶️", f"Activity again after {duration(event.idle_s)}"))
        elif isinstance(event, ArtifactAdded):
            a = event.artifact
            out.append(
                ThreadLine(
                    event.event_id,
                    "artifact",
                    "📎",
                    "Artifact",
                    a.name + (f" — {a.uri}" if a.uri else ""),
                )
            )
        elif isinstance(event, TaskFinished):
            self._tasks.pop(event.task_id, None)
            if event.outcome == "error":
                out.append(
                    ThreadLine(
                        event.event_id,
                        "error",
                        "❌",
                        f"Failed: {event.error_type or 'error'}",
                        event.error_message,
                        event.stacktrace,
                        broadcast=self.broadcast_errors,
                        key="error",
                        logs=log_tail_text(event.log_tail),
                    )
                )
            out.append(
                ThreadLine(
                    event.event_id,
                    "summary",
                    STATUS_STYLE[event.outcome][1],
                    summary_text(event),
                    ", ".join(a.name for a in v.artifacts) or None,
                    key="summary",
                    fields=results(v.results),
                    lead=summary_text(event, with_results=False) if v.results else None,
                )
            )
        return out


def _unanswered(event: Checkpoint, asked: dict[str, str]) -> list[ThreadLine]:
    """A request that closed with nobody's answer (the server's expiry, or
    its agent giving up): a line saying so, which is no approval."""
    a = event.attributes
    aid = a.get(EXPIRED_APPROVAL) or a.get(UNANSWERED_APPROVAL)
    if not isinstance(aid, str) or aid in {r.approval_id for r in event.task.approvals}:
        return []
    return [
        ThreadLine(
            event.event_id,
            "unanswered",
            "⌛",
            "No answer in time: not approved",
            asked.get(aid),
            key=f"unanswered:{aid}",
        )
    ]


def budget_line(event: BudgetWarning) -> ThreadLine:
    if event.scope == "agent_day":
        agent, _, day = event.subject.rpartition(":")
        scope = f"{agent}'s budget for {day}"
    else:
        scope = {"task": "this task's budget", "day": "the budget for", "month": "the budget for"}[event.scope]
        scope += f" {event.subject}" if event.scope in ("day", "month") else ""
    used = usd(event.used) if event.unit == "usd" else f"{event.used:,.0f} tokens"
    budget = usd(event.budget) if event.unit == "usd" else f"{event.budget:,.0f} tokens"
    over = event.level >= 1.0
    return ThreadLine(
        event.event_id,
        "budget",
        "🛑" if over else "💸",
        f"{event.level:.0%} of {scope} used: {used} of {budget}"
        + ("; it is set to stop the task" if event.stops else ""),
        None,
        broadcast=over,
        key=f"budget:{event.event_id}",
    )


def intervention_line(event: HumanIntervention) -> ThreadLine:
    """``✅ Approved by @alice: <comment>``, or ``🚫 @bob tried to approve: <reason>``; one line per intervention id."""
    d = event.decision
    if event.outcome == "denied":
        summary, detail = denied_text(d, actor(d)), decision_detail(event)
        return ThreadLine(
            event.event_id, "denied", "🚫", summary, detail, key=f"denied:{d.intervention_id}", decision=d
        )
    tally = (event.votes, event.votes_needed) if event.votes_needed > 1 else None
    emoji = "🗳️" if tally and tally[0] < tally[1] else DECISION_STYLE[d.action][0]
    summary = decision_text(d, actor(d), tally)
    key = f"intervention:{d.intervention_id}"
    return ThreadLine(
        event.event_id, "intervention", emoji, summary, decision_detail(event), key=key, decision=d, tally=tally
    )


__all__ = [
    "EXPIRED_APPROVAL",
    "TOOL_FAILED",
    "UNANSWERED_APPROVAL",
    "LineKind",
    "ThreadLine",
    "ThreadPolicy",
    "budget_line",
    "intervention_line",
]
