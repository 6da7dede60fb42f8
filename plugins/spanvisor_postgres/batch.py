"""A batch of events to table rows: task states folded per task (pure code, no I/O).

Task states of one batch are folded per task with the same forward-only rule
the SQL upsert applies (see ``tables``), so a batch of 500 checkpoints of one
task is one upsert, not 500; a task id reused by a later root folds only its
newest run into the task row (the older run's events still give their
timeline rows). One event's rows are :mod:`.rows`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from spanvisor.events import (
    ArtifactAdded,
    Checkpoint,
    Event,
    HumanIntervention,
    TaskCorrected,
    TaskFinished,
    TaskStarted,
)

from .correctrows import corrected_artifacts, corrected_values, fact_rows
from .humanrows import intervention_record, log_records
from .renames import under
from .rows import CHECKPOINT_COLUMNS, TIMELINE, artifact_record, checkpoint_record, is_terminal, task_row, ts


@dataclasses.dataclass(slots=True)
class BatchRows:
    tasks: list[tuple[Any, ...]]
    checkpoints: list[tuple[Any, ...]]
    artifacts: list[tuple[Any, ...]]
    interventions: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    logs: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    # A finished task's totals may move: the batch finishes or corrects a
    # task, or brings a model call (``finaltotals.RECOUNT``).
    recount: bool = False

    def tables(self) -> tuple[list[tuple[Any, ...]], ...]:
        """The rows in ``tables.TABLES`` order."""
        return (self.tasks, self.checkpoints, self.artifacts, self.interventions, self.logs)


_TIMELINE = TIMELINE


def _rank(event: Event) -> tuple[bool, int, int]:
    # The upsert's order without building the row: terminal first, then the
    # newest view by seq (time breaks ties of views from before seq existed).
    return (is_terminal(event), event.task.seq, event.task.updated_ns or event.time_ns)


def _timeline_rows(
    event: Event, checkpoints: list[tuple[Any, ...]], artifacts: list[tuple[Any, ...]], logs: list[tuple[Any, ...]]
) -> None:
    if isinstance(event, _TIMELINE):
        checkpoints.append(checkpoint_record(event))
    elif isinstance(event, ArtifactAdded):
        artifacts.append(artifact_record(event))
    elif isinstance(event, TaskCorrected):
        checkpoints.append(tuple(corrected_values(event, ts)[c] for c in CHECKPOINT_COLUMNS))
        artifacts.extend(corrected_artifacts(event, ts))
        fact_rows(event, checkpoints, artifacts)
    elif isinstance(event, TaskFinished):
        logs.extend(log_records(event, ts))


def batch_rows(events: Sequence[Event], writer: str = "", moved: dict[str, str] | None = None) -> BatchRows:
    """All rows of a batch; task states folded to one per task, sorted by id
    so concurrent writers lock task rows in the same order (no deadlocks).

    ``writer`` names who writes them (a replica id; "" for no one in
    particular), so a task two writers wrote is known as shared.

    ``moved``: provisional ids renamed (former id -> task id, renames.py):
    events still under one are written under the task's id, but for a
    decision's own row, which is written as it was decided (it is signed
    as the event says, and shown as the task's through the alias).

    Only the two deciding events of each task (the most advanced one and
    the earliest terminal one) are turned into full task rows; the rest
    count through cheap aggregates. That keeps a 512-event batch of a few
    tasks from sanitising 512 task states.
    """
    best: dict[str, tuple[tuple[bool, int, int], Event]] = {}  # with its rank, worked out once
    first_end: dict[str, Event] = {}
    started: dict[str, int] = {}
    activity: dict[str, int] = {}
    tokens: dict[str, tuple[int, int]] = {}
    checkpoints: list[tuple[Any, ...]] = []
    artifacts: list[tuple[Any, ...]] = []
    interventions: list[tuple[Any, ...]] = []
    logs: list[tuple[Any, ...]] = []
    recount = False
    # The task row is the newest run's (a task id reused by a later root,
    # started after the earlier run ended): a batch holding two runs folds
    # only the newer one's events into it.
    runs: dict[str, tuple[str, int | None]] = {}  # task id -> (run id, its end when seen)
    for as_sent in events:
        if isinstance(as_sent, HumanIntervention):
            interventions.append(intervention_record(as_sent, ts))
            if not as_sent.known:
                # The task is not open where the decision was taken: its view
                # is not newer (it may carry ids only), so the task row stays.
                continue
        event = under(as_sent, moved) if moved else as_sent
        tid = event.task.task_id
        v = event.task
        seen = runs.get(tid)
        if seen is not None and seen[0] != v.run_id:
            if seen[1] is not None and v.started_ns >= seen[1]:
                for fold in (best, first_end, started, activity, tokens):
                    fold.pop(tid, None)
                seen = None
            elif v.ended_ns is not None and v.ended_ns <= started.get(tid, v.ended_ns + 1):
                _timeline_rows(event, checkpoints, artifacts, logs)
                continue  # an earlier run's event: its rows, not the task row
        recount = recount or v.ended_ns is not None
        if seen is None or seen[0] == v.run_id:
            runs[tid] = (v.run_id, v.ended_ns)
        prev = best.get(tid)
        rank = _rank(event)
        if prev is None or rank > prev[0]:
            best[tid] = (rank, event)
        s = v.started_ns or event.time_ns
        started[tid] = min(started.get(tid, s), s)
        i, o = tokens.get(tid, (0, 0))
        tokens[tid] = (max(i, v.input_tokens), max(o, v.output_tokens))
        if isinstance(event, TaskFinished):
            end = first_end.get(tid)
            if end is None or _rank(event) < _rank(end):
                first_end[tid] = event
            logs.extend(log_records(event, ts))
        elif not isinstance(event, HumanIntervention | TaskCorrected):  # a click, or after the end: no activity
            activity[tid] = max(activity.get(tid, event.time_ns), event.time_ns)
        if isinstance(event, _TIMELINE):
            checkpoints.append(checkpoint_record(event))
            recount = recount or (type(event) is Checkpoint and event.source == "model_call")
        elif isinstance(event, ArtifactAdded):
            artifacts.append(artifact_record(event))
        elif isinstance(event, TaskCorrected):  # correctrows.py
            checkpoints.append(tuple(corrected_values(event, ts)[c] for c in CHECKPOINT_COLUMNS))
            artifacts.extend(corrected_artifacts(event, ts))
            fact_rows(event, checkpoints, artifacts)
        elif not isinstance(event, TaskStarted | TaskFinished | HumanIntervention):
            raise TypeError(f"not an event: {type(event).__name__}")
    tasks = []
    for tid in sorted(best):
        row = task_row(best[tid][1])
        values = row.values
        values["started_at"] = ts(started[tid])
        values["writer"] = writer
        values["input_tokens"], values["output_tokens"] = tokens[tid]
        act = activity.get(tid)
        values["last_checkpoint_at"] = ts(act) if act is not None else None
        end = first_end.get(tid)
        if end is not None:
            values["ended_at"] = ts(end.task.ended_ns or end.time_ns)
        tasks.append(row.record())
    return BatchRows(tasks, checkpoints, artifacts, interventions, logs, recount)


__all__ = ["BatchRows", "batch_rows"]
