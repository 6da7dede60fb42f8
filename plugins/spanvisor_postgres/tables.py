"""The audit tables' SQL: one row per table of a batch, keyed so a replay
inserts nothing twice, and the staging tables the COPY path fills.

Pure strings, used by :mod:`spanvisor_postgres.writer`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .humanrows import INTERVENTION_COLUMNS, LOG_COLUMNS
from .rows import ARTIFACT_COLUMNS, CHECKPOINT_COLUMNS, TASK_COLUMNS
from .streamrows import CREATE_STAGE

# State columns follow the newest view (highest TaskView.seq; time only breaks
# ties between views written before seq existed); a terminal state beats any
# open one, so a late or replayed older event never moves a task backwards.
# A task id reused by a later root, started after the row's run ended, is a
# new run: its first view replaces the row (every column). Anything else
# (a replica's partial view of the same run) follows the rules below.
_NEWER_RUN = (
    "(EXCLUDED.root_span_id <> t.root_span_id AND t.ended_at IS NOT NULL AND EXCLUDED.started_at >= t.ended_at)"
)
# An earlier run's view, ended before the row's run started: changes nothing.
_OLDER_RUN = (
    "(EXCLUDED.root_span_id <> t.root_span_id AND EXCLUDED.ended_at IS NOT NULL AND EXCLUDED.ended_at <= t.started_at)"
)
_FORWARD = (
    f"({_NEWER_RUN} OR (t.ended_at IS NULL AND EXCLUDED.ended_at IS NOT NULL)"
    " OR ((t.ended_at IS NULL) = (EXCLUDED.ended_at IS NULL)"
    " AND (EXCLUDED.seq, EXCLUDED.updated_ns) > (t.seq, t.updated_ns)))"
)
_STATE = (
    # A task's agent may be named late: a task shown before its root arrived
    # (its service's until then) takes its root's agent from its newer views.
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
    "artifacts",
    "updated_at",
    "updated_ns",
    "duration_s",
    "last_event_id",
    "notes",
    "seq",
    "cost_usd",
    "unpriced_calls",
    "budget_usd",
    "budget_tokens",
    "results",
)
_MERGED = {
    "started_at": "LEAST(t.started_at, EXCLUDED.started_at)",
    "ended_at": "COALESCE(t.ended_at, EXCLUDED.ended_at)",
    "input_tokens": "GREATEST(t.input_tokens, EXCLUDED.input_tokens)",
    "output_tokens": "GREATEST(t.output_tokens, EXCLUDED.output_tokens)",
    "last_checkpoint_at": "GREATEST(t.last_checkpoint_at, EXCLUDED.last_checkpoint_at)",
    # Only TaskFinished carries the error; a view corrected after it (a late
    # span) must not erase it.
    "error_type": "COALESCE(EXCLUDED.error_type, t.error_type)",
    "error_message": "COALESCE(EXCLUDED.error_message, t.error_message)",
    "error_stacktrace": "COALESCE(EXCLUDED.error_stacktrace, t.error_stacktrace)",
}
_SETS = [f"{c} = CASE WHEN {_FORWARD} THEN EXCLUDED.{c} ELSE t.{c} END" for c in _STATE]
_SETS += [f"{c} = CASE WHEN {_NEWER_RUN} THEN EXCLUDED.{c} ELSE {expr} END" for c, expr in _MERGED.items()]
_SETS += [f"{c} = CASE WHEN {_NEWER_RUN} THEN EXCLUDED.{c} ELSE t.{c} END" for c in ("trace_id", "root_span_id")]
# Another writer (a replica, an agent process) upserting the row makes it
# shared: its final totals are then recounted (finaltotals.py). A row from
# before writers were named ('') takes the next writer's name.
_OTHER_WRITER = "(t.writer <> '' AND EXCLUDED.writer <> '' AND t.writer <> EXCLUDED.writer)"
_SETS += [
    f"writer = CASE WHEN {_NEWER_RUN} OR t.writer = '' THEN EXCLUDED.writer ELSE t.writer END",
    f"shared = CASE WHEN {_NEWER_RUN} THEN false ELSE t.shared OR {_OTHER_WRITER} END",
]
_TASK_CONFLICT = (
    f"ON CONFLICT (task_id) DO UPDATE SET {', '.join(_SETS)} "
    # Skip the write (and a dead tuple) when nothing would change: replays are free.
    f"WHERE NOT {_OLDER_RUN} AND ({_FORWARD} OR EXCLUDED.started_at < t.started_at"
    " OR EXCLUDED.input_tokens > t.input_tokens OR EXCLUDED.output_tokens > t.output_tokens"
    " OR EXCLUDED.last_checkpoint_at > COALESCE(t.last_checkpoint_at, '-infinity')"
    f" OR (t.writer = '' AND EXCLUDED.writer <> '') OR (NOT t.shared AND {_OTHER_WRITER}))"
)

# The task row's upsert clause, also what a renamed task's row is moved with (renames.py).
TASK_CONFLICT = _TASK_CONFLICT

_ONCE = "ON CONFLICT (event_id) DO NOTHING"
# Every table a batch writes, in the order of ``BatchRows.tables()``: each row
# keyed by what makes it unique, so a replay inserts nothing twice.
TABLES = (
    ("agent_tasks", TASK_COLUMNS, _TASK_CONFLICT),
    ("agent_checkpoints", CHECKPOINT_COLUMNS, _ONCE),
    ("task_artifacts", ARTIFACT_COLUMNS, _ONCE),
    ("human_interventions", INTERVENTION_COLUMNS, "ON CONFLICT (intervention_id) DO NOTHING"),
    ("task_logs", LOG_COLUMNS, "ON CONFLICT (task_id, pos) DO NOTHING"),
)
STAGES = {table: (columns, conflict) for table, columns, conflict in TABLES}


def alias(table: str) -> str:
    return " AS t" if table == "agent_tasks" else ""


def _insert(table: str, columns: Sequence[str], conflict: str) -> str:
    params = ", ".join(f"${i + 1}" for i in range(len(columns)))
    return f"INSERT INTO {table}{alias(table)} ({', '.join(columns)}) VALUES ({params}) {conflict}"


STATEMENTS = {table: _insert(table, columns, conflict) for table, columns, conflict in TABLES}
CHECKPOINT_INSERT = STATEMENTS["agent_checkpoints"]
ARTIFACT_INSERT = STATEMENTS["task_artifacts"]
TASK_UPSERT = STATEMENTS["agent_tasks"]

# ON COMMIT DELETE ROWS: a temp table lives as long as its connection, and is
# empty at the start of every transaction. One per table of TABLES.
STAGE_TABLES = " ".join(
    [f"CREATE TEMP TABLE IF NOT EXISTS _stage_{t} (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;" for t in STAGES]
    + [CREATE_STAGE]
)


def _from_stage(table: str) -> str:
    columns, conflict = STAGES[table]
    cols = ", ".join(columns)
    return f"INSERT INTO {table}{alias(table)} ({cols}) SELECT {cols} FROM _stage_{table} {conflict};"


FROM_STAGE = {table: _from_stage(table) for table in STAGES}
