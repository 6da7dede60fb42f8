"""Rows for a correction after a task's end (``TaskCorrected``, the late-span
rule): pure code, no I/O.

The task row takes the corrected view like any newer one (its ``seq`` is
higher; ``tables.TASK_UPSERT``). The timeline gets one row of kind
``corrected`` (keyed by the event id) whose attributes say what the late
span added, and each artifact it added gets a ``task_artifacts`` row keyed
by an id derived from the event's and the artifact's.

A span that ended before its task's root but arrived after it carries its
``facts``, the events it would have caused: each is written as the row it
would have been (its own id, time and view, so a replay or another replica's
copy of the same event is one row), marked ``arrived_late``. Its artifacts
are then in those rows, not again under the correction's id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from spanvisor.display.task import progress_of
from spanvisor.events import ArtifactAdded, TaskCorrected, stable_id

from .finaltotals import call_id
from .rows import TIMELINE, artifact_record, checkpoint_record
from .sanitize import ID_LIMIT, clean_text, json_text


def corrected_values(event: TaskCorrected, ts: Callable[[int], datetime]) -> dict[str, Any]:
    """The timeline row, by column name (``rows.CHECKPOINT_COLUMNS`` orders it)."""
    v = event.task
    notes: list[str] = list(event.notes)
    added = {
        "span_id": event.span_id,
        "input_tokens": event.added_input_tokens,
        "output_tokens": event.added_output_tokens,
        "cost_usd": event.added_cost_usd,
        "unpriced_calls": event.added_unpriced_calls,
        "artifacts": [a.name for a in event.added_artifacts],
        "arrived_late": event.arrived_late,
        "facts": [f.event_id for f in event.facts],
    }
    call = call_id(event)
    if call is not None:  # outlived work's call, counted once in the final totals (finaltotals.py)
        added["call_id"] = call
        added["root_span_id"] = v.root_span_id
    values: dict[str, Any] = {
        "event_id": clean_text(event.event_id, "event_id", notes, ID_LIMIT),
        "task_id": clean_text(v.task_id, "task_id", notes, ID_LIMIT),
        "agent_id": clean_text(v.agent_id, "agent_id", notes, ID_LIMIT),
        "kind": "corrected",
        "at": ts(event.time_ns),
        "time_ns": event.time_ns,
        "status": clean_text(v.status, "status", notes, ID_LIMIT),
        "progress": progress_of(v),
        "step": clean_text(v.step, "step", notes),
        "message": clean_text(v.message, "message", notes),
        "source": None,
        "context_tokens": v.context_tokens,
        "context_limit": v.context_limit,
        "input_tokens": v.input_tokens,
        "output_tokens": v.output_tokens,
        "level": None,
        "threshold": None,
        "ratio": None,
        "changed": json_text(
            ["tokens"] if event.added_input_tokens or event.added_output_tokens else [], "changed", notes
        ),
        "attributes": json_text(added, "attributes", notes),
        "seq": v.seq,
        "cost_usd": event.added_cost_usd or None,
        "arrived_late": event.arrived_late,
    }
    values["notes"] = json_text(notes, "notes", [])
    return values


def corrected_artifacts(event: TaskCorrected, ts: Callable[[int], datetime]) -> list[tuple[Any, ...]]:
    """A ``task_artifacts`` row (``rows.ARTIFACT_COLUMNS``) per artifact the late span added
    (one that arrived late has them as facts: :func:`fact_rows`)."""
    out: list[tuple[Any, ...]] = []
    if event.arrived_late:
        return out
    for a in event.added_artifacts:
        notes: list[str] = list(event.notes)
        out.append(
            (
                stable_id(event.event_id, "artifact", a.name, a.uri, a.kind),
                clean_text(event.task.task_id, "task_id", notes, ID_LIMIT),
                clean_text(event.task.agent_id, "agent_id", notes, ID_LIMIT),
                ts(event.time_ns),
                event.time_ns,
                clean_text(a.name, "artifact.name", notes),
                clean_text(a.uri, "artifact.uri", notes),
                clean_text(a.kind, "artifact.kind", notes, ID_LIMIT),
                json_text(notes, "notes", []),
                False,
            )
        )
    return out


def fact_rows(event: TaskCorrected, checkpoints: list[tuple[Any, ...]], artifacts: list[tuple[Any, ...]]) -> None:
    """The rows of a late span's facts, marked arrived late."""
    for fact in event.facts:
        if isinstance(fact, ArtifactAdded):
            artifacts.append(artifact_record(fact, arrived_late=True))
        elif isinstance(fact, TIMELINE):
            checkpoints.append(checkpoint_record(fact, arrived_late=True))
