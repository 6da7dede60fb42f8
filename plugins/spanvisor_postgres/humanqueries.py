"""People's decisions and a task's log tail, as SQL (``spanvisor interventions``,
``spanvisor task``). Plain dicts out, like :mod:`.queries`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from spanvisor.display.readable import decided

_COLUMNS = (
    "h.intervention_id, h.task_id, h.at, h.action, h.actor, h.actor_name, h.source, h.outcome, h.reason, "
    "h.comment, h.approval_id, h.known, COALESCE(h.agent_id, t.agent_id) AS agent_id, t.task_name, "
    "h.run_id, h.question, h.question_digest, h.refusal"
)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching ids that start with ``prefix`` (its own % and _ escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# A decision taken while its task showed under a former id (renames.py) is
# the task's: shown under the task's id, with the id it was recorded under.
# The alias is followed only for the derived id of the task row's own run,
# and only for that run's decisions (their run_id is in the chain's hash).
_RENAMED = (
    "LEFT JOIN LATERAL (SELECT a.task_id FROM task_aliases a JOIN agent_tasks x ON x.task_id = a.task_id"
    " AND a.former_id = x.trace_id || '-' || x.root_span_id WHERE a.former_id = h.task_id"
    " AND COALESCE(h.run_id, '') IN ('', a.run_id)) n ON true"
    " LEFT JOIN agent_tasks t ON t.task_id = COALESCE(n.task_id, h.task_id)"
)
# The task a former id ($1) names, when the alias is followed.
_TASK_OF = (
    "SELECT a.task_id FROM task_aliases a JOIN agent_tasks x ON x.task_id = a.task_id"
    " AND a.former_id = x.trace_id || '-' || x.root_span_id WHERE a.former_id = $1"
)
_SHOWN = (
    f"SELECT {_COLUMNS.replace('h.task_id, ', 'COALESCE(n.task_id, h.task_id) AS task_id, ', 1)},"
    " CASE WHEN n.task_id IS NOT NULL THEN h.task_id END AS recorded_as"
    f" FROM human_interventions h {_RENAMED}"
)


async def list_interventions(
    conn: Any, task: str | None = None, since: datetime | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest first. ``task``: an id or the start of ids (a task may have no
    row of its own: a decision on a task this database never saw); a renamed
    task's by either id."""
    where: list[str] = []
    args: list[Any] = []
    if task:
        args += [task, like_prefix(task)]
        # Its own and, by a former id, the task's; by the task's id, its former id's too.
        where.append(
            f"(h.task_id = $1 OR h.task_id LIKE $2 OR n.task_id = $1 OR n.task_id LIKE $2 OR h.task_id = ({_TASK_OF}))"
        )
    if since is not None:
        args.append(since)
        where.append(f"h.at >= ${len(args)}")
    args.append(limit)
    sql = (
        _SHOWN
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY h.at DESC, h.intervention_id LIMIT ${len(args)}"
    )
    return [_shown(r) for r in await conn.fetch(sql, *args)]


async def task_interventions(conn: Any, task_id: str, former_id: str | None = None) -> list[dict[str, Any]]:
    """One task's interventions, oldest first; ``former_id``: the id it showed
    under before its root named its own (``find_task``), whose decisions are its."""
    rows = await conn.fetch(
        f"{_SHOWN} WHERE h.task_id = $1 OR (h.task_id = $2 AND n.task_id = $1) ORDER BY h.at, h.intervention_id",
        task_id,
        former_id,
    )
    return [_shown(r) for r in rows]


def _shown(row: Any) -> dict[str, Any]:
    out = dict(row)
    if out.get("recorded_as") is None:
        del out["recorded_as"]  # recorded under the id it is shown under
    return out


async def task_log_tail(conn: Any, task_id: str) -> list[dict[str, Any]]:
    """The task's last log records (from its finish), oldest first."""
    rows = await conn.fetch(
        "SELECT pos, at, level, logger, message FROM task_logs WHERE task_id = $1 ORDER BY pos", task_id
    )
    return [dict(r) for r in rows]


def who(row: dict[str, Any]) -> str:
    """The person: their name with their id, or the id alone."""
    actor, name = row.get("actor") or "someone", row.get("actor_name")
    return f"{name} ({actor})" if name and name != actor else actor


def detail(row: dict[str, Any]) -> str:
    """``alice (U1) approved a1 “Deploy?” via slack: ship it`` / ``U2 tried to
    approve a1: denied, expired (that request has expired)``."""
    action = str(row.get("action") or "?")
    what = f" {row['approval_id']}" if row.get("approval_id") else ""
    if row.get("question"):
        q = " ".join(str(row["question"]).split())
        what += f" “{q if len(q) <= 80 else q[:79] + '…'}”"
    via = f" via {row['source']}" if row.get("source") else ""
    if row.get("outcome") == "denied":
        text = f"{who(row)} tried to {action}{what}{via}: denied"
        if row.get("refusal"):
            text += f", {row['refusal']}"
        if row.get("reason"):
            text += f" ({row['reason']})"
    else:
        text = f"{who(row)} {decided(action)}{what}{via}"
    if row.get("comment"):
        text += f": {row['comment']}"
    return text


# Decisions on tasks this database has no row for (decided on another
# replica's task, or after the task was pruned) are pruned by their own age.
PRUNE_ORPHAN_INTERVENTIONS = (
    "DELETE FROM human_interventions WHERE ctid = ANY(ARRAY("
    "SELECT h.ctid FROM human_interventions h WHERE h.at < $1"
    " AND NOT EXISTS (SELECT 1 FROM agent_tasks t WHERE t.task_id = h.task_id) LIMIT $2))"
)
