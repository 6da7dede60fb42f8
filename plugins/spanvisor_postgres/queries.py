"""The questions operators ask during an incident, as SQL; and retention.

Each function takes an asyncpg connection or pool and returns plain dicts
(datetimes as ``datetime``), so the CLI prints them as a table or as JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from spanvisor.control import grants
from spanvisor.control.log import REQUESTS_NAMESPACE
from spanvisor.display.readable import usd
from spanvisor.events import Status
from spanvisor.statestores import chainhead

from .humanqueries import PRUNE_ORPHAN_INTERVENTIONS, like_prefix
from .removals import PRUNE_FLOOR_S, RECORD_FOR_ORPHANS, RECORD_FOR_TASKS

TERMINAL = ("complete", "error", "cancelled", "lost", "evicted")
# What `spanvisor tasks --status` takes: a task status, or "running" for every
# task that has not ended (whatever its status).
STATUS_FILTERS: tuple[str, ...] = ("running", *get_args(Status))


class TaskNotFound(LookupError):
    pass


def _since(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.now(UTC) - timedelta(seconds=seconds)


async def list_tasks(
    conn: Any,
    status: str | None = None,
    agent: str | None = None,
    since_s: float | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Most recent first. ``status='running'`` means not finished."""
    where: list[str] = []
    args: list[Any] = []
    if status == "running":
        where.append("ended_at IS NULL")
    elif status:
        args.append(status)
        where.append(f"status = ${len(args)}")
    if agent:
        args.append(agent)
        where.append(f"agent_id = ${len(args)}")
    if since_s is not None:
        args.append(_since(since_s))
        where.append(f"started_at >= ${len(args)}")
    args.append(limit)
    sql = (
        "SELECT task_id, agent_id, agent_name, task_name, repo, status, progress, message, "
        "input_tokens, output_tokens, context_tokens, context_limit, started_at, ended_at, "
        "duration_s, last_checkpoint_at, error_type, error_message, cost_usd, unpriced_calls, "
        "budget_usd, budget_tokens FROM agent_tasks"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY started_at DESC LIMIT ${len(args)}"
    )
    return [dict(r) for r in await conn.fetch(sql, *args)]


# A task row with the id it showed under before its root named its own
# (renames.py): an alias is followed only for the derived id of the row's own run.
_FOLLOWED = "a.task_id = t.task_id AND a.former_id = t.trace_id || '-' || t.root_span_id"
_TASK_ROW = f"SELECT t.*, a.former_id FROM agent_tasks t LEFT JOIN task_aliases a ON {_FOLLOWED}"
_ALIASED_ROW = f"SELECT t.*, a.former_id FROM task_aliases a JOIN agent_tasks t ON {_FOLLOWED}"


async def find_task(conn: Any, id_or_prefix: str) -> dict[str, Any]:
    """The task with this id, or the one task whose id starts with it; a
    renamed task by its former id too (then shown under its own)."""
    rows = await conn.fetch(
        f"{_TASK_ROW} WHERE t.task_id = $1 UNION ALL {_ALIASED_ROW} WHERE a.former_id = $1 UNION ALL "
        f"({_TASK_ROW} WHERE t.task_id LIKE $2 AND t.task_id <> $1 ORDER BY t.started_at DESC LIMIT 6) UNION ALL "
        f"({_ALIASED_ROW} WHERE a.former_id LIKE $2 AND a.former_id <> $1 AND t.task_id NOT LIKE $2"
        " ORDER BY t.started_at DESC LIMIT 6)",
        id_or_prefix,
        like_prefix(id_or_prefix),
    )
    exact = [r for r in rows if id_or_prefix in (r["task_id"], r["former_id"])]
    if exact:
        return _task(exact[0])
    if not rows:
        raise TaskNotFound(f"no task with an id starting with {id_or_prefix!r}")
    if len(rows) > 1:
        ids = ", ".join(r["task_id"] for r in rows[:5])
        raise TaskNotFound(f"{id_or_prefix!r} matches several tasks ({ids}…); give more of the id")
    return _task(rows[0])


def _task(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in ("steps", "artifacts", "notes", "results"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def cost_text(cost_usd: float | None, unpriced_calls: int | None) -> str:
    """A task's or an agent's cost as the commands print it: ``~$1.27`` (an
    estimate), ``+ 2 unpriced`` calls no price is known for, ``-`` for none."""
    cost, unpriced = cost_usd or 0.0, unpriced_calls or 0
    if not cost and not unpriced:
        return "-"
    if not cost:
        return f"unknown ({unpriced} unpriced)"
    return f"~{usd(cost)}" + (f" + {unpriced} unpriced" if unpriced else "")


async def agent_stats(conn: Any, since_s: float | None = None) -> list[dict[str, Any]]:
    """Per agent: tasks, running, success rate of finished ones, p50/p95 duration, tokens,
    estimated cost and unpriced calls."""
    rows = await conn.fetch(
        """
        SELECT agent_id,
               count(*) AS tasks,
               count(*) FILTER (WHERE ended_at IS NULL) AS running,
               count(*) FILTER (WHERE status = 'complete' AND ended_at IS NOT NULL) AS complete,
               count(*) FILTER (WHERE ended_at IS NOT NULL) AS finished,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS p50_s,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95_s,
               sum(input_tokens)::bigint AS input_tokens,
               sum(output_tokens)::bigint AS output_tokens,
               sum(cost_usd) AS cost_usd,
               sum(unpriced_calls)::bigint AS unpriced_calls
        FROM agent_tasks
        WHERE $1::timestamptz IS NULL OR started_at >= $1
        GROUP BY agent_id ORDER BY tasks DESC, agent_id
        """,
        _since(since_s),
    )
    out = []
    for r in rows:
        d = dict(r)
        d["success_rate"] = (d["complete"] / d["finished"]) if d["finished"] else None
        out.append(d)
    return out


# State-store keys of pruned tasks: the id itself (Slack parent, Grafana
# annotation) and "<id>/<reply key>" (Slack replies and alerts), never in a
# namespace whose keys are nobody's task (the open requests' list, standing
# grants, the decision log's head): a task named "open" or "all" must not take
# them with it. The prefix
# test is a byte range on the text_pattern_ops index (migration 0002), with no
# LIKE pattern to escape. A task id may itself contain "/", so a key that is,
# or is under, a longer task that is kept ("a/b" or "a/b/summary" when pruning
# "a" but not "a/b") is left alone: one primary-key probe per candidate.
SHARED_NAMESPACES = [REQUESTS_NAMESPACE, grants.NAMESPACE, chainhead.NAMESPACE]
_PRUNE_STATE_KEYS = (
    "DELETE FROM delivery_state WHERE key = ANY($1::text[]) AND namespace <> ALL($2::text[])",
    """
    DELETE FROM delivery_state d
    USING unnest($1::text[]) AS p(id)
    WHERE d.namespace <> ALL($2::text[]) AND d.key ~>=~ (p.id || '/') AND d.key ~<~ (p.id || '0')
      AND left(d.key, length(p.id) + 1) = p.id || '/'
      AND NOT EXISTS (
          SELECT 1 FROM agent_tasks t
          WHERE t.task_id = ANY(ARRAY(
                SELECT left(d.key, i - 1)
                FROM generate_series(length(p.id) + 2, length(d.key) + 1) AS i
                WHERE i > length(d.key) OR substr(d.key, i, 1) = '/'))
            AND t.task_id <> ALL($1::text[])
      )
    """,
)


_ALL_FORMER_IDS = "SELECT former_id FROM task_aliases WHERE task_id = ANY($1::text[])"
_FORMER_IDS = (
    f"SELECT a.former_id FROM task_aliases a JOIN agent_tasks t ON {_FOLLOWED} WHERE a.task_id = ANY($1::text[])"
)


async def prune(
    pool: Any, older_than_s: float, batch: int = 500, max_batches: int | None = None, floor_s: float = PRUNE_FLOOR_S
) -> int:
    """Delete tasks inactive for longer than ``older_than_s`` with all their rows.

    Bounded batches, each its own short transaction, and ``SKIP LOCKED`` so
    a task being written right now is left for the next run: no long locks.
    People's decisions go only once older than ``floor_s`` too, each
    transaction that removes some with its prune record first (the proof
    that retention removed them: :mod:`.removals`).
    """
    cutoff = _since(older_than_s)
    keep_s = max(older_than_s, floor_s)
    decided_before = _since(keep_s)
    deleted = 0
    n = 0
    while max_batches is None or n < max_batches:
        n += 1
        async with pool.acquire() as conn, conn.transaction():
            ids = [
                r["task_id"]
                for r in await conn.fetch(
                    "SELECT task_id FROM agent_tasks WHERE started_at < $1 "
                    "AND COALESCE(ended_at, last_checkpoint_at, started_at) < $1 "
                    "LIMIT $2 FOR UPDATE SKIP LOCKED",
                    cutoff,
                    batch,
                )
            ]
            if not ids:
                break
            # Decisions taken while a task showed under its former id go with it.
            owned = ids + [r["former_id"] for r in await conn.fetch(_FORMER_IDS, ids)]
            await conn.execute(RECORD_FOR_TASKS, keep_s, owned, decided_before)
            await conn.execute(
                "DELETE FROM human_interventions WHERE task_id = ANY($1::text[]) AND at < $2", owned, decided_before
            )
            # What sinks and the control log kept under a former id goes too (its
            # alias followed or not: a later run of the id may have replaced the row).
            keyed = ids + [r["former_id"] for r in await conn.fetch(_ALL_FORMER_IDS, ids)]
            await conn.execute("DELETE FROM task_aliases WHERE task_id = ANY($1::text[])", ids)
            for table in ("agent_checkpoints", "task_artifacts", "task_logs", "quarantine"):
                await conn.execute(f"DELETE FROM {table} WHERE task_id = ANY($1::text[])", ids)
            for statement in _PRUNE_STATE_KEYS:
                await conn.execute(statement, keyed, SHARED_NAMESPACES)
            await conn.execute("DELETE FROM agent_tasks WHERE task_id = ANY($1::text[])", ids)
            deleted += len(ids)
        if len(ids) < batch:
            break
    for _ in range(max_batches or 1_000_000):
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(RECORD_FOR_ORPHANS, keep_s, decided_before)
            status = await conn.execute(PRUNE_ORPHAN_INTERVENTIONS, decided_before, batch)
        if not status.endswith(f" {batch}"):
            break
    for _ in range(max_batches or 1_000_000):
        async with pool.acquire() as conn:
            status = await conn.execute(_PRUNE_CLICK_KEYS, list(CLICK_NAMESPACES), cutoff, batch)
        if not status.endswith(f" {batch}"):
            break
    return deleted


# State-store keys kept per click, not per task (a Slack payload seen, a
# refused click's first answer): pruned by their own age.
CLICK_NAMESPACES = ("slack.payloads", "decisions.denied")
_PRUNE_CLICK_KEYS = """
DELETE FROM delivery_state WHERE ctid IN (
    SELECT ctid FROM delivery_state WHERE namespace = ANY($1::text[]) AND updated_at < $2 LIMIT $3
)
"""
