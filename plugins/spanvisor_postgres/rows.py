"""Events to table rows: pure code, no I/O.

One event gives at most one timeline row (checkpoint, warning, artifact or
intervention; a finish also its log tail; a correction after the end its
artifacts too, ``correctrows``) and a task state, except a
``HumanIntervention`` with ``known=False``, which leaves the task row alone.
A batch's task states are folded per task by :mod:`.batch`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from spanvisor.display.task import progress_of
from spanvisor.events import (
    ArtifactAdded,
    BudgetWarning,
    Checkpoint,
    ContextForecast,
    ContextWarning,
    DiffUpdated,
    Event,
    TaskFinished,
    TaskResumed,
    TaskStalled,
)

from .humanrows import results_json
from .sanitize import ID_LIMIT, LONG_TEXT_LIMIT, clean_text, json_text

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CHECKPOINT_COLUMNS = (
    "event_id",
    "task_id",
    "agent_id",
    "kind",
    "at",
    "time_ns",
    "status",
    "progress",
    "step",
    "message",
    "source",
    "context_tokens",
    "context_limit",
    "input_tokens",
    "output_tokens",
    "level",
    "threshold",
    "ratio",
    "changed",
    "attributes",
    "notes",
    "seq",
    "cost_usd",
    "arrived_late",
)
ARTIFACT_COLUMNS = ("event_id", "task_id", "agent_id", "at", "time_ns", "name", "uri", "kind", "notes", "arrived_late")
TASK_COLUMNS = (
    "task_id",
    "trace_id",
    "root_span_id",
    "agent_id",
    "agent_name",
    "task_name",
    "repo",
    "branch",
    "pull_request",
    "status",
    "progress",
    "step",
    "steps",
    "message",
    "model",
    "context_tokens",
    "context_limit",
    "input_tokens",
    "output_tokens",
    "artifacts",
    "started_at",
    "updated_at",
    "updated_ns",
    "ended_at",
    "duration_s",
    "error_type",
    "error_message",
    "error_stacktrace",
    "last_checkpoint_at",
    "last_event_id",
    "notes",
    "seq",
    "cost_usd",
    "unpriced_calls",
    "budget_usd",
    "budget_tokens",
    "results",
    # Which replica or process wrote the row: a finished task more than one
    # wrote has its totals recounted (finaltotals.py). Set by the batch.
    "writer",
)


def _artifact(a: Any) -> dict[str, Any]:
    return {"name": a.name, "uri": a.uri, "kind": a.kind}


def ts(ns: int) -> datetime:
    # Integer microseconds: a float of ns/1e9 would round some of them.
    return _EPOCH + timedelta(0, 0, ns // 1000)


@dataclasses.dataclass(slots=True)
class TaskRow:
    """One task's state, ready to upsert."""

    values: dict[str, Any]
    terminal: bool
    updated_ns: int
    started_ns: int
    last_activity_ns: int | None

    def record(self) -> tuple[Any, ...]:
        return tuple(self.values[c] for c in TASK_COLUMNS)


_TERMINAL = frozenset({"complete", "error", "cancelled", "lost", "evicted"})


def is_terminal(event: Event) -> bool:
    """The event shows a finished task: its TaskFinished, or a view corrected
    after it (a late span on an end-order path), which must reach the row too."""
    v = event.task
    return isinstance(event, TaskFinished) or (v.ended_ns is not None and v.status in _TERMINAL)


def task_row(event: Event) -> TaskRow:
    v = event.task
    notes: list[str] = list(event.notes)
    fin = event if isinstance(event, TaskFinished) else None
    terminal = is_terminal(event)
    ended_ns = (v.ended_ns or event.time_ns) if terminal else None
    # Starting, checkpoints and artifacts count as activity for stall checks.
    activity = None if terminal else event.time_ns
    started_ns = v.started_ns or event.time_ns
    values: dict[str, Any] = {
        "task_id": clean_text(v.task_id, "task_id", notes, ID_LIMIT),
        "trace_id": clean_text(v.trace_id, "trace_id", notes, ID_LIMIT),
        "root_span_id": clean_text(v.root_span_id, "root_span_id", notes, ID_LIMIT),
        "agent_id": clean_text(v.agent_id, "agent_id", notes, ID_LIMIT),
        "agent_name": clean_text(v.agent_name, "agent_name", notes, ID_LIMIT),
        "task_name": clean_text(v.task_name, "task_name", notes),
        "repo": clean_text(v.repo, "repo", notes, ID_LIMIT),
        "branch": clean_text(v.branch, "branch", notes, ID_LIMIT),
        "pull_request": clean_text(v.pull_request, "pull_request", notes),
        "status": clean_text(v.status, "status", notes, ID_LIMIT),
        "progress": progress_of(v),  # a completed task is done, as every sink shows it
        "step": clean_text(v.step, "step", notes),
        "steps": json_text(list(v.steps), "steps", notes),
        "message": clean_text(v.message, "message", notes),
        "model": clean_text(v.model, "model", notes, ID_LIMIT),
        "context_tokens": v.context_tokens,
        "context_limit": v.context_limit,
        "input_tokens": v.input_tokens,
        "output_tokens": v.output_tokens,
        "artifacts": json_text([_artifact(a) for a in v.artifacts], "artifacts", notes),
        "started_at": ts(started_ns),
        "updated_at": ts(v.updated_ns or event.time_ns),
        "updated_ns": v.updated_ns or event.time_ns,
        "ended_at": ts(ended_ns) if ended_ns is not None else None,
        "duration_s": fin.duration_s if fin else ((ended_ns - started_ns) / 1e9 if ended_ns is not None else None),
        "error_type": clean_text(fin.error_type, "error_type", notes, ID_LIMIT) if fin else None,
        "error_message": clean_text(fin.error_message, "error_message", notes) if fin else None,
        "error_stacktrace": clean_text(fin.stacktrace, "stacktrace", notes, LONG_TEXT_LIMIT) if fin else None,
        "last_checkpoint_at": ts(activity) if activity is not None else None,
        "last_event_id": clean_text(event.event_id, "event_id", notes, ID_LIMIT),
    }
    values["results"] = results_json(v, notes)
    values["notes"] = json_text(notes, "notes", [])
    values["seq"] = v.seq
    values["cost_usd"] = v.cost_usd
    values["unpriced_calls"] = v.unpriced_calls
    values["budget_usd"] = v.budget_usd
    values["budget_tokens"] = v.budget_tokens
    values["writer"] = ""
    return TaskRow(values, terminal, values["updated_ns"], started_ns, activity)


TimelineEvent = Checkpoint | ContextWarning | ContextForecast | BudgetWarning | TaskStalled | TaskResumed | DiffUpdated
# The same, for isinstance: a union type is checked more slowly, once an event.
TIMELINE = (Checkpoint, ContextWarning, ContextForecast, BudgetWarning, TaskStalled, TaskResumed, DiffUpdated)


def _timeline_fields(event: TimelineEvent, notes: list[str]) -> tuple[str, Any, Any, Any, Any, Any, Any, Any]:
    """kind, tokens, limit, level, threshold, ratio, attributes (JSON), cost of one timeline row."""
    v = event.task
    if isinstance(event, ContextWarning):
        return ("context_warning", event.tokens, event.limit, event.level, event.threshold, event.ratio, "{}", None)
    if isinstance(event, ContextForecast):
        extra: dict[str, Any] = {"calls": event.calls, "eta_s": event.eta_s}
        return (
            "context_forecast",
            event.tokens,
            event.limit,
            "forecast",
            event.threshold,
            event.ratio,
            json_text(extra, "attributes", notes),
            None,
        )
    if isinstance(event, BudgetWarning):
        budget: dict[str, Any] = {"scope": event.scope, "unit": event.unit, "used": event.used, "budget": event.budget}
        if event.subject:
            budget["subject"] = event.subject
        level = "critical" if event.level >= 1.0 else "warning"
        ratio = event.used / event.budget if event.budget else None
        attrs = json_text(budget, "attributes", notes)
        return ("budget_warning", v.context_tokens, v.context_limit, level, event.level, ratio, attrs, None)
    if isinstance(event, DiffUpdated):
        # The work changed: its digest, size and files (the text is not stored: migration 0021).
        facts = {"digest": event.digest, "chars": len(event.diff), "files": event.files, "clipped": event.clipped}
        return (
            "diff",
            v.context_tokens,
            v.context_limit,
            None,
            None,
            None,
            json_text(facts, "attributes", notes),
            None,
        )
    if isinstance(event, TaskStalled | TaskResumed):
        kind = "stalled" if isinstance(event, TaskStalled) else "resumed"
        idle = json_text({"idle_s": event.idle_s}, "attributes", notes)
        return (kind, v.context_tokens, v.context_limit, None, None, None, idle, None)
    cost = event.attributes.get("cost_usd") if event.source == "model_call" else None
    return (
        "checkpoint",
        v.context_tokens,
        v.context_limit,
        None,
        None,
        None,
        json_text(event.attributes, "attributes", notes),
        cost if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
    )


# A checkpoint's changed fields: a handful of distinct tuples ("message",),
# ("tokens",) ...; their JSON, when it needed no fix (no note), is kept.
_CHANGED_JSON: dict[tuple[str, ...], str] = {}
_CHANGED_KEPT = 256


def _changed(changed: tuple[str, ...], notes: list[str]) -> str:
    if not changed:
        return "[]"
    text = _CHANGED_JSON.get(changed)
    if text is None:
        before = len(notes)
        text = json_text(list(changed), "changed", notes)
        if len(notes) == before and len(_CHANGED_JSON) < _CHANGED_KEPT:
            _CHANGED_JSON[changed] = text
    return text


def checkpoint_record(event: TimelineEvent, arrived_late: bool = False) -> tuple[Any, ...]:
    v = event.task
    notes: list[str] = list(event.notes)
    if type(event) is Checkpoint:  # most rows: _timeline_fields' last case, inline
        kind, tokens, limit, level, threshold, ratio = "checkpoint", v.context_tokens, v.context_limit, None, None, None
        attrs = event.attributes
        attributes = json_text(attrs, "attributes", notes) if attrs else "{}"
        cost = attrs.get("cost_usd") if event.source == "model_call" else None
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            cost = None
        changed = _changed(event.changed, notes)
    else:
        kind, tokens, limit, level, threshold, ratio, attributes, cost = _timeline_fields(event, notes)
        changed = json_text(list(event.changed), "changed", notes) if isinstance(event, Checkpoint) else "[]"
    record = (
        clean_text(event.event_id, "event_id", notes, ID_LIMIT),
        clean_text(v.task_id, "task_id", notes, ID_LIMIT),
        clean_text(v.agent_id, "agent_id", notes, ID_LIMIT),
        kind,
        ts(event.time_ns),
        event.time_ns,
        clean_text(v.status, "status", notes, ID_LIMIT),
        progress_of(v),
        clean_text(v.step, "step", notes),
        clean_text(v.message, "message", notes),
        event.source if isinstance(event, Checkpoint) else None,
        tokens,
        limit,
        v.input_tokens,
        v.output_tokens,
        level,
        threshold,
        ratio,
        changed,
        attributes,
    )
    return (*record, json_text(notes, "notes", []), v.seq, cost, arrived_late)


def artifact_record(event: ArtifactAdded, arrived_late: bool = False) -> tuple[Any, ...]:
    notes: list[str] = list(event.notes)
    a = event.artifact
    record = (
        clean_text(event.event_id, "event_id", notes, ID_LIMIT),
        clean_text(event.task.task_id, "task_id", notes, ID_LIMIT),
        clean_text(event.task.agent_id, "agent_id", notes, ID_LIMIT),
        ts(event.time_ns),
        event.time_ns,
        clean_text(a.name, "artifact.name", notes),
        clean_text(a.uri, "artifact.uri", notes),
        clean_text(a.kind, "artifact.kind", notes, ID_LIMIT),
    )
    return (*record, json_text(notes, "notes", []), arrived_late)
