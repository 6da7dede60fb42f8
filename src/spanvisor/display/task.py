"""What a task looks like to a person: shared by the console and Slack sinks.

The console shows exactly what Slack would, so both take their content from
here: status styles, the progress bar, context usage, steps, cost and the
finished task's summary (which events become thread lines:
:mod:`spanvisor.display.thread`). Text that came from spans or
from people (``detail``, ``code``, ``logs``, ``fields``, a decision's comment
and actor name) is returned raw; each sink escapes it for its medium.
"""

from __future__ import annotations

from spanvisor.clis import registry
from spanvisor.display.readable import (
    duration,
    results,
    usd,
)
from spanvisor.events import (
    TaskFinished,
    TaskView,
)

NONE = "\u2013"  # an en dash: "no value yet"

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
    "evicted": (":eject:", "⏏️", "#795548"),
}


def progress_of(view: TaskView) -> float | None:
    """The progress a card shows: a task that completed is done, whatever
    its agent last reported (an agent that said 30 % and then finished must
    not show "complete" beside a bar at 30 %); any other task shows the last
    figure it reported (for one that failed: how far it got)."""
    return 100.0 if view.status == "complete" else view.progress


# A task that has ended: it is no longer stalled, and no warning is its last action.
FINISHED = frozenset({"complete", "error", "cancelled", "lost", "evicted"})


def status_text(view: TaskView) -> str:
    """``working · ⏸ stalled``; a task that has ended is only what it ended
    as (``lost``, never ``lost · ⏸ stalled``)."""
    stalled = view.stalled and view.status not in FINISHED
    return view.status.replace("_", " ") + (" · ⏸ stalled" if stalled else "")


def cancel_effect(view: TaskView) -> str | None:
    """What a cancel of a coding-agent session does: under ``spanvisor run``
    the launcher stops the CLI; a session without it (its task id the
    session id in its CLI's namespace, ``claude-code:<id>``) is blocked by
    ``spanvisor hook`` at its next tool call. None for any other task."""
    adapter = registry.by_service(view.agent_id) if view.agent_id else None
    if adapter is None:
        return None
    if view.task_id.startswith(adapter.namespace + ":"):
        return "its next tool call will be blocked by spanvisor hook"
    return f"spanvisor run stops {adapter.title}"


def last_action(view: TaskView) -> str | None:
    """What the task's card shows as its last action: its latest message,
    but not a warning (``⚠ …``) once it has ended: the warning stays in the
    thread, where it happened; the end is said by the status."""
    msg = view.message
    if msg and view.status in FINISHED and msg.lstrip().startswith("⚠"):
        return None
    return msg


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
_FINAL_MARK = {"complete": "✓", "error": "✗", "cancelled": "⏹", "lost": "?", "evicted": "⏏"}


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
    if event.outcome == "lost":
        head = f"Lost (no sign of life) after {duration(event.duration_s)}"
    elif event.outcome == "evicted":
        # Not the agent's outcome: spanvisor stopped following the task.
        head = f"Evicted (no longer tracked: too many open tasks) after {duration(event.duration_s)}"
    else:
        head = f"{event.outcome.capitalize()} in {duration(event.duration_s)}"
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


__all__ = [
    "FINISHED",
    "NONE",
    "STATUS_STYLE",
    "context_usage",
    "cost_text",
    "elapsed",
    "last_action",
    "progress_bar",
    "progress_of",
    "status_text",
    "steps_line",
    "summary_text",
    "tokens",
]
