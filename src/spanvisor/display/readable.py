"""Values as people read them, the same in every sink: durations, dollars,
numbers, a tool call, a task's results and log lines, and what a person's
decision reads as. Plain text; each sink escapes what came from spans or people for its
medium.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from spanvisor.events import (
    ApprovalRequest,
    BudgetWarning,
    Checkpoint,
    ContextForecast,
    ContextWarning,
    Decision,
    HumanIntervention,
    LogLine,
    ResultField,
    TaskCorrected,
)
from spanvisor.redaction import clip_middle


def duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def tool_step(attrs: Mapping[str, object]) -> tuple[str, str | None]:
    """A tool call's ``lookup (12 ms)``, and why it failed (None: it did not)."""
    took, error = attrs.get("duration_s"), attrs.get("error")
    text = str(attrs.get("tool") or "tool")
    if isinstance(took, int | float) and not isinstance(took, bool):
        text += f" ({took * 1000:.0f} ms)" if took < 1 else f" ({duration(took)})"
    return text, (str(error) if error else None)


def usd(value: float) -> str:
    """A dollar estimate as people read it: $0.0042, $0.50, $1.27, $1,204."""
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    if not value:
        return "$0"
    whole, _, cents = f"{value:.4f}".partition(".")
    return f"${whole}.{cents.rstrip('0').ljust(2, '0')}"


def number(x: float) -> str:
    """``4,820``, ``4,820.5``, ``0.94``, ``0.000123``: as people write them."""
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 1:
        return f"{x:,.2f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


def clock(time_ns: int, seconds: bool = False) -> str:
    """``12:03 UTC`` (or ``12:03:04``): a time of day, for text media."""
    at = datetime.fromtimestamp(time_ns / 1e9, UTC)
    return at.strftime("%H:%M:%S") if seconds else at.strftime("%H:%M UTC")


# --- results and log tails ------------------------------------------------------

MAX_RESULTS = 10  # Slack's fields per section; the console shows as many
# Units read as a duration, and their length in seconds.
_DURATION_UNITS = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 0.001, "min": 60.0, "minutes": 60.0, "h": 3600.0}


def result_value(f: ResultField) -> str:
    """A result as people read it: ``$4,820``, ``12.5%``, ``3m 10s``, ``3 PRs``, ``yes``."""
    v, unit = f.value, (f.unit or "").strip()
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return f"{v} {unit}" if unit else v
    low = unit.lower()
    if low in ("usd", "$"):
        return ("-" if v < 0 else "") + usd(abs(v))
    if low in ("percent", "%", "pct"):
        return f"{number(v)}%"
    if low in _DURATION_UNITS and v * _DURATION_UNITS[low] >= 1:
        return duration(v * _DURATION_UNITS[low])
    return f"{number(v)} {unit}" if unit else number(v)


def results(fields: Sequence[ResultField]) -> tuple[tuple[str, str], ...]:
    """(name, value) of a task's results: at most :data:`MAX_RESULTS`, the
    last one then saying how many are not shown."""
    out = [(f.name, result_value(f)) for f in fields[:MAX_RESULTS]]
    if len(fields) > MAX_RESULTS:
        out[-1] = ("More results", f"{len(fields) - MAX_RESULTS + 1} not shown")
    return tuple(out)


def log_tail_text(lines: Sequence[LogLine], per_line: int = 500) -> str | None:
    """``12:03:04 WARNING app.db: connection refused``, one line per record,
    oldest first; None without records. A long message is cut on its line."""
    if not lines:
        return None
    out = []
    for ln in lines:
        text = f"{clock(ln.time_ns, seconds=True)} {ln.level} {ln.logger + ': ' if ln.logger else ''}{ln.message}"
        out.append(text if len(text) <= per_line else text[: per_line - 1] + "…")
    return "\n".join(out)


# --- people's decisions -------------------------------------------------------

# action -> (emoji, what it reads as once done, what trying it reads as)
DECISION_STYLE: dict[str, tuple[str, str, str]] = {
    "approve": ("✅", "Approved", "approve"),
    "reject": ("❌", "Rejected", "reject"),
    "cancel": ("🛑", "Cancel requested", "cancel"),
    "retry": ("🔁", "Retry requested", "retry"),
    "acknowledge": ("👀", "Acknowledged", "acknowledge"),
}
# action -> its past tense in a sentence: "already approved by @alice",
# "alice approved a1", "only a failed task can be retried".
DECISION_VERBS: dict[str, str] = {
    "approve": "approved",
    "reject": "rejected",
    "cancel": "cancelled",
    "retry": "retried",
    "acknowledge": "acknowledged",
}


def decided(action: str) -> str:
    """The past tense of ``action`` (an unknown one as it is)."""
    return DECISION_VERBS.get(action, action)


def actor(d: Decision) -> str:
    """Who decided, as plain text: their name, else ``@<Slack id>``, else the id."""
    return d.actor_name or (f"@{d.actor_id}" if d.source == "slack" else d.actor_id)


def decision_text(d: Decision, who: str, tally: tuple[int, int] | None = None) -> str:
    """``Approved by <who>``, or ``Approval 1 of 2 by <who>`` for a vote that
    does not yet decide; ``who`` in the medium's form (escaped, or a mention)."""
    if tally is not None and tally[0] < tally[1] and d.action == "approve":
        return f"Approval {tally[0]} of {tally[1]} by {who}"
    return f"{DECISION_STYLE[d.action][1]} by {who}"


def asked_text(question: str, limit: int = 200) -> str:
    """``Q: “Apply the fix to prod?”``: what a decision answered, on one
    line, long as its start and its end."""
    return f"Q: “{clip_middle(' '.join(question.split()), limit)}”"


def decision_detail(event: HumanIntervention) -> str | None:
    """A decision's thread-line detail (agent and people's text: each medium
    escapes it): a refusal's reason, or the person's comment, then the
    question it answered."""
    asked = asked_text(event.request.question) if event.request is not None else None
    if event.outcome == "denied":
        return " · ".join(x for x in (event.reason or "not allowed", asked) if x)
    d = event.decision
    tally = f"{event.votes} of {event.votes_needed} approvals" if event.votes_needed > 1 else None
    if tally and event.votes < event.votes_needed:
        tally = f"{event.votes_needed - event.votes} more needed" + from_text(event.request)
    how = f"with other arguments: {d.edited}" if d.edited else ("under a standing grant" if d.grant_id else None)
    glass = "🚨 broke glass: approved alone, whatever the request needed" if d.break_glass else None
    # An applied decision's reason: what a cancel after an end only the agent said still does.
    return "\n".join(x for x in (glass, tally, how, d.comment, event.reason, asked) if x) or None


def from_text(req: ApprovalRequest | None) -> str:
    """`` from sre or alice``: whose approvals a request counts ("" for anyone's)."""
    names = [w.removeprefix("group:") for w in (req.approvers_from if req is not None else ())]
    if not names:
        return ""
    return " from " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


def required_text(version: str | None, required_by: str | None, denied: str | None = None) -> str:
    """``required by rule prod-two-sre of policy acme@7c1e9a2b40d3``: what
    set a request's requirement, under the central policy ("" without one)."""
    if not version:
        return ""
    if required_by and required_by.startswith("central:"):
        return f"{'denied' if denied else 'required'} by rule {required_by[8:]} of policy {version}"
    return f"as asked (policy {version} requires no more)"


def denied_text(d: Decision, who: str) -> str:
    """``<who> tried to approve``."""
    return f"{who} tried to {DECISION_STYLE[d.action][2]}"


def corrected_text(event: TaskCorrected) -> str:
    """``corrected: +5,000 input tokens, +$0.02 from a call that ended after the task``."""
    added = [
        f"+{n:,} {what}"
        for n, what in (
            (event.added_input_tokens, "input tokens"),
            (event.added_output_tokens, "output tokens"),
            (event.added_unpriced_calls, "unpriced calls" if event.added_unpriced_calls != 1 else "unpriced call"),
            (len(event.added_artifacts), "artifacts" if len(event.added_artifacts) != 1 else "artifact"),
        )
        if n
    ]
    if event.added_cost_usd:
        added.insert(2, f"+{usd(event.added_cost_usd)}")
    if event.arrived_late:  # one line for what the late span told, never a reopened task
        told = _told(event)
        return f"corrected: {', '.join([*told, *added]) or 'totals'} from work that ended before the task but arrived after it"
    origin = "a call" if event.added_input_tokens or event.added_output_tokens else "work"
    return f"corrected: {', '.join(added) or 'totals'} from {origin} that ended after the task"


def _told(event: TaskCorrected) -> list[str]:
    """A late span's facts, counted: ``1 checkpoint``, ``2 tool calls`` …
    (its artifacts are said with the totals)."""
    counts: dict[str, int] = {}
    for f in event.facts:
        if isinstance(f, Checkpoint):
            name = {"model_call": "model call", "tool_call": "tool call"}.get(f.source, "checkpoint")
        elif isinstance(f, ContextWarning | ContextForecast | BudgetWarning):
            name = "warning"
        else:
            continue
        counts[name] = counts.get(name, 0) + 1
    return [f"{n} {name}{'s' if n != 1 else ''}" for name, n in counts.items()]


def answer_command(task_id: str, run_id: str | None, approval_id: str, digest: str | None) -> str:
    """The command that approves a request, as a person pastes it (the
    CLI puts its own name and ``--url`` in: ``cli.pasteable.with_name``)."""
    q = shlex.quote
    command = f"spanvisor approve {q(task_id)} {q(approval_id)}"
    if run_id:
        command += f" --run {q(run_id)}"
    if digest:
        command += f" --digest {q(digest)}"
    return command


__all__ = [
    "DECISION_STYLE",
    "DECISION_VERBS",
    "MAX_RESULTS",
    "actor",
    "answer_command",
    "asked_text",
    "clock",
    "corrected_text",
    "decided",
    "decision_detail",
    "decision_text",
    "denied_text",
    "duration",
    "from_text",
    "log_tail_text",
    "number",
    "result_value",
    "results",
    "usd",
]
