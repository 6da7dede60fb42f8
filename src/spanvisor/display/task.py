"""What a task looks like to a person: shared by the console and Slack sinks.

The console shows exactly what Slack would, so both take their content from
here: status styles, the progress bar, context usage, and the policy that
decides which events become thread lines. Text that came from spans or
from people (``detail``, ``code``, ``logs``, ``fields``, a decision's comment
and actor name) is returned raw; each sink escapes it for its medium.
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
    TaskView,
)

NONE = "\u2013"  # an en dash: "no value yet"
TOOL_FAILED = "Tool failed"  # the summary of a failed tool's line (a sink may show only those)

# status -> (emoji shortcode, unicode emoji, colour)
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    "starting": (":hourglass_flowing_sand:", "⏳", "#9e9e9e"),
    "working": (":gear:", "⚙️", "#2196f3"),
    "waiting": (":double_vertical_bar:", "⏸️", "#ffc107"),
    "blocked": (":no_entry:", "⛔", "#ff5722"),
    "awaiting_approval": (":raised_hand:", "✋", "#9c27b0"),
    "context_warning": (":warning:", "⚠️", "#ff9800"),
    "error": (":x:", "❌", "#d32f2f"),
    "complete": (":white_check_mark:", "✅", "#2e7d32"),
    "cancelled": (":no_entry_sign:", "🚫", "#616161"),
    "lost": (":ghost:", "👻", "#455a64"),
}


def progress_bar(progress: float | None, width: int = 10) -> str:
    if progress is None:
        return "▱" * width + " " + NONE
    filled = round(max(0.0, min(100.0, progress)) / 100 * width)
    return "▰" * filled + "▱" * (width - filled) + f" {progress:.0f}%"


def tokens(n: int | None) -> str:
    return NONE if n is None else f"{n:,}"


def context_usage(view: TaskView, thresholds: tuple[float, ...] = (0.7, 0.85)) -> str:
    """``50,000 / 200,000 (25%)``, marked once a warning level is reached."""
    if view.context_tokens is None:
        return NONE
    if not view.context_limit:
        return f"{tokens(view.context_tokens)} / unknown window"
    ratio = view.context_ratio or 0.0
    mark = ""
    if thresholds and ratio >= thresholds[-1]:
        mark = " 🔴"
    elif thresholds and ratio >= thresholds[0]:
        mark = " 🟠"
    return f"{tokens(view.context_tokens)} / {tokens(view.context_limit)} ({ratio:.0%}){mark}"


def elapsed(view: TaskView, now_ns: int) -> float:
    end = view.ended_ns or max(now_ns, view.updated_ns)
    return max(0.0, (end - view.started_ns) / 1e9)


# How a finished task's last step reads: it no longer runs ("▶").
_FINAL_MARK = {"complete": "✓", "error": "✗", "cancelled": "⏹", "lost": "?"}


def steps_line(view: TaskView) -> str | None:
    """``done → *current* → next``: at most one step either side.

    Once the task has finished (its status is complete, error or cancelled)
    no step is current: the last step reads done (✓), failed (✗) or stopped
    (⏹), and no next step is shown.
    """
    if not view.steps:
        return view.step
    i = view.step_index
    if i is None:
        return " → ".join(view.steps[:3]) + (" → …" if len(view.steps) > 3 else "")
    final = _FINAL_MARK.get(view.status)
    parts = []
    if i > 0:
        parts.append(f"✓ {view.steps[i - 1]}")
    parts.append(f"{final or '▶'} {view.steps[i]}")
    if final is None and i + 1 < len(view.steps):
        parts.append(view.steps[i + 1])
    return f"({i + 1}/{len(view.steps)}) " + " → ".join(parts)


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
    # name/value pairs (result fields), raw. ``summary`` has them as text;
    # ``lead`` is the summary without them, for media that show them as fields.
    fields: tuple[tuple[str, str], ...] = ()
    lead: str | None = None
    # The task's last log lines (already redacted by the producer), raw, oldest first.
    logs: str | None = None

    @property
    def reply_key(self) -> str:
        return self.key or f"{self.kind}:{self.event_id}"


@dataclass
class _TaskLines:
    milestone: float = -1.0
    step: str | None = None
    asked: frozenset[str] = frozenset()  # approval ids with an "Approval needed" line


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
                # Only the open ones: a closed request never reopens (the tracker's rule).
                st.asked = frozenset(r.approval_id for r in v.approvals)
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
        f"{event.level:.0%} of {scope} used: {used} of {budget}",
        None,
        broadcast=over,
        key=f"budget:{event.event_id}",
    )


def cost_text(v: TaskView) -> str | None:
    """``~$1.27`` (estimate), with the calls no price is known for; None: no model call yet."""
    if not v.cost_usd and not v.unpriced_calls:
        return None
    if not v.cost_usd:
        return f"cost unknown ({v.unpriced_calls} unpriced call{'s' if v.unpriced_calls != 1 else ''})"
    unpriced = f" + {v.unpriced_calls} unpriced" if v.unpriced_calls else ""
    return f"~{usd(v.cost_usd)}{unpriced}"


def summary_text(event: TaskFinished, with_results: bool = True) -> str:
    """One line: outcome, duration, tokens, cost, outliers, artifacts, then results."""
    v = event.task
    head = (
        f"Lost (no sign of life) after {duration(event.duration_s)}"
        if event.outcome == "lost"
        else f"{event.outcome.capitalize()} in {duration(event.duration_s)}"
    )
    parts = [
        head,
        f"tokens in {v.input_tokens:,} / out {v.output_tokens:,}",
    ]
    cost = cost_text(v)
    if cost:
        parts.append(cost)
    parts.extend(event.outliers)
    if v.artifacts:
        parts.append(f"{len(v.artifacts)} artifact{'s' if len(v.artifacts) != 1 else ''}")
    if with_results:
        parts.extend(f"{name}: {value}" for name, value in results(v.results))
    return " · ".join(parts)


def intervention_line(event: HumanIntervention) -> ThreadLine:
    """``✅ Approved by @alice: <comment>``, or ``🚫 @bob tried to approve: <reason>``; one line per intervention id."""
    d = event.decision
    if event.outcome == "denied":
        summary, detail = denied_text(d, actor(d)), decision_detail(event)
        return ThreadLine(
            event.event_id, "denied", "🚫", summary, detail, key=f"denied:{d.intervention_id}", decision=d
        )
    emoji, summary = DECISION_STYLE[d.action][0], decision_text(d, actor(d))
    key = f"intervention:{d.intervention_id}"
    return ThreadLine(event.event_id, "intervention", emoji, summary, decision_detail(event), key=key, decision=d)


__all__ = [
    "NONE",
    "STATUS_STYLE",
    "ThreadLine",
    "ThreadPolicy",
    "budget_line",
    "context_usage",
    "cost_text",
    "elapsed",
    "intervention_line",
    "progress_bar",
    "steps_line",
    "summary_text",
    "tokens",
]
