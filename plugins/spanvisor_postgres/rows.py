"""Events to table rows: pure code, no I/O.

One event gives at most one timeline row (checkpoint, warning or artifact)
and always a task state. Task states of one batch are folded per task with
the same forward-only rule the SQL upsert applies (see ``writer.TASK_UPSERT``),
so a batch of 500 checkpoints of one task is one upsert, not 500.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from spanvisor.events import (
    ArtifactAdded,
    Checkpoint,
    ContextWarning,
    Event,
    TaskFinished,
    TaskStarted,
)

from .sanitize import ID_LIMIT, LONG_TEXT_LIMIT, clean_json, clean_text, dumps

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
)
ARTIFACT_COLUMNS = ("event_id", "task_id", "agent_id", "at", "time_ns", "name", "uri", "kind", "notes")
TASK_COLUMNS = (
    "task_id",
    "trace_id",
    "root_span_id",
    "agent_id",
    "agent_name",
    "task_name",
    "repo",
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
)


def ts(ns: int) -> datetime:
    # Integer microseconds: a float of ns/1e9 would round some of them.
    return _EPOCH + timedelta(microseconds=ns // 1000)


@dataclasses.dataclass(slots=True)
class TaskRow:
    """One task's state, ready to upsert; ``fold`` keeps the most advanced one."""

    values: dict[str, Any]
    terminal: bool
    updated_ns: int
    started_ns: int
    last_activity_ns: int | None

    def key(self) -> tuple[bool, int]:
        # A terminal state beats any open one; otherwise the newer state wins.
        return (self.terminal, self.updated_ns)

    def fold(self, other: TaskRow) -> TaskRow:
        newer, older = (other, self) if other.key() > self.key() else (self, other)
        merged = dict(newer.values)
        merged["input_tokens"] = max(self.values["input_tokens"], other.values["input_tokens"])
        merged["output_tokens"] = max(self.values["output_tokens"], other.values["output_tokens"])
        started = min(self.started_ns, other.started_ns)
        merged["started_at"] = ts(started)
        # ended_at is set once: a terminal row keeps its own end.
        merged["ended_at"] = older.values["ended_at"] if older.terminal and newer.terminal else newer.values["ended_at"]
        acts = [n for n in (self.last_activity_ns, other.last_activity_ns) if n is not None]
        activity = max(acts) if acts else None
        merged["last_checkpoint_at"] = ts(activity) if activity is not None else None
        return TaskRow(merged, newer.terminal, newer.updated_ns, started, activity)

    def record(self) -> tuple[Any, ...]:
        return tuple(self.values[c] for c in TASK_COLUMNS)


def task_row(event: Event) -> TaskRow:
    v = event.task
    notes: list[str] = list(event.notes)
    fin = event if isinstance(event, TaskFinished) else None
    terminal = fin is not None
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
        "status": clean_text(v.status, "status", notes, ID_LIMIT),
        "progress": v.progress,
        "step": clean_text(v.step, "step", notes),
        "steps": dumps(clean_json(list(v.steps), "steps", notes)),
        "message": clean_text(v.message, "message", notes),
        "model": clean_text(v.model, "model", notes, ID_LIMIT),
        "context_tokens": v.context_tokens,
        "context_limit": v.context_limit,
        "input_tokens": v.input_tokens,
        "output_tokens": v.output_tokens,
        "artifacts": dumps(clean_json([dataclasses.asdict(a) for a in v.artifacts], "artifacts", notes)),
        "started_at": ts(started_ns),
        "updated_at": ts(v.updated_ns or event.time_ns),
        "updated_ns": v.updated_ns or event.time_ns,
        "ended_at": ts(ended_ns) if ended_ns is not None else None,
        "duration_s": fin.duration_s if fin else None,
        "error_type": clean_text(fin.error_type, "error_type", notes, ID_LIMIT) if fin else None,
        "error_message": clean_text(fin.error_message, "error_message", notes) if fin else None,
        "error_stacktrace": clean_text(fin.stacktrace, "stacktrace", notes, LONG_TEXT_LIMIT) if fin else None,
        "last_checkpoint_at": ts(activity) if activity is not None else None,
        "last_event_id": clean_text(event.event_id, "event_id", notes, ID_LIMIT),
    }
    values["notes"] = dumps(clean_json(notes, "notes", []))
    return TaskRow(values, terminal, values["updated_ns"], started_ns, activity)


def checkpoint_record(event: Checkpoint | ContextWarning) -> tuple[Any, ...]:
    v = event.task
    notes: list[str] = list(event.notes)
    is_cp = isinstance(event, Checkpoint)
    record = (
        clean_text(event.event_id, "event_id", notes, ID_LIMIT),
        clean_text(v.task_id, "task_id", notes, ID_LIMIT),
        clean_text(v.agent_id, "agent_id", notes, ID_LIMIT),
        "checkpoint" if is_cp else "context_warning",
        ts(event.time_ns),
        event.time_ns,
        clean_text(v.status, "status", notes, ID_LIMIT),
        v.progress,
        clean_text(v.step, "step", notes),
        clean_text(v.message, "message", notes),
        event.source if isinstance(event, Checkpoint) else None,
        event.tokens if isinstance(event, ContextWarning) else v.context_tokens,
        event.limit if isinstance(event, ContextWarning) else v.context_limit,
        v.input_tokens,
        v.output_tokens,
        event.level if isinstance(event, ContextWarning) else None,
        event.threshold if isinstance(event, ContextWarning) else None,
        event.ratio if isinstance(event, ContextWarning) else None,
        dumps(clean_json(list(event.changed), "changed", notes)) if isinstance(event, Checkpoint) else "[]",
        dumps(clean_json(event.attributes, "attributes", notes)) if isinstance(event, Checkpoint) else "{}",
    )
    return (*record, dumps(clean_json(notes, "notes", [])))


def artifact_record(event: ArtifactAdded) -> tuple[Any, ...]:
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
    return (*record, dumps(clean_json(notes, "notes", [])))


@dataclasses.dataclass(slots=True)
class BatchRows:
    tasks: list[tuple[Any, ...]]
    checkpoints: list[tuple[Any, ...]]
    artifacts: list[tuple[Any, ...]]


def batch_rows(events: Sequence[Event]) -> BatchRows:
    """All rows of a batch; task states folded to one per task, sorted by id
    so concurrent writers lock task rows in the same order (no deadlocks)."""
    tasks: dict[str, TaskRow] = {}
    checkpoints: list[tuple[Any, ...]] = []
    artifacts: list[tuple[Any, ...]] = []
    for event in events:
        row = task_row(event)
        tid = row.values["task_id"]
        prev = tasks.get(tid)
        tasks[tid] = row if prev is None else prev.fold(row)
        if isinstance(event, Checkpoint | ContextWarning):
            checkpoints.append(checkpoint_record(event))
        elif isinstance(event, ArtifactAdded):
            artifacts.append(artifact_record(event))
        elif not isinstance(event, TaskStarted | TaskFinished):
            raise TypeError(f"not an event: {type(event).__name__}")
    return BatchRows([tasks[k].record() for k in sorted(tasks)], checkpoints, artifacts)
