"""The questions operators ask during an incident, as SQL; and retention.

Each function takes an asyncpg connection or pool and returns plain dicts
(datetimes as ``datetime``), so the CLI prints them as a table or as JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from spanvisor.display.readable import tool_step, usd
from spanvisor.events import Status

from .humanqueries import PRUNE_ORPHAN_INTERVENTIONS, task_interventions
from .humanqueries import detail as intervention_detail

TERMINAL = ("complete", "error", "cancelled", "lost")
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


async def find_task(conn: Any, id_or_prefix: str) -> dict[str, Any]:
    """The task with this id, or the one task whose id starts with it."""
    rows = await conn.fetch(
        "SELECT * FROM agent_tasks WHERE task_id = $1 UNION ALL "
        "(SELECT * FROM agent_tasks WHERE task_id LIKE $2 AND task_id <> $1 ORDER BY started_at DESC LIMIT 6)",
        id_or_prefix,
        id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
    )
    exact = [r for r in rows if r["task_id"] == id_or_prefix]
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


# A model call's own tokens: named on the row by the tracker when it does
# (attributes input_tokens/output_tokens), else the growth of the task's
# running totals since the row before (rows in the tracker's order).
_CHECKPOINTS_SQL = """
SELECT event_id, kind, at, status, progress, step, message, level, threshold, ratio, context_tokens,
       context_limit, notes, source, attributes, cost_usd,
       input_tokens - lag(input_tokens, 1, 0::bigint) OVER w AS input_growth,
       output_tokens - lag(output_tokens, 1, 0::bigint) OVER w AS output_growth
FROM agent_checkpoints WHERE task_id = $1
WINDOW w AS (ORDER BY time_ns, seq, event_id)
ORDER BY time_ns, seq, event_id
"""


def _int_attr(attrs: dict[str, Any], key: str) -> int | None:
    v = attrs.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _attrs(r: Any) -> dict[str, Any]:
    attrs = json.loads(r["attributes"]) if isinstance(r["attributes"], str) else (r["attributes"] or {})
    return attrs if isinstance(attrs, dict) else {}


def cost_text(cost_usd: float | None, unpriced_calls: int | None) -> str:
    """A task's or an agent's cost as the commands print it: ``~$1.27`` (an
    estimate), ``+ 2 unpriced`` calls no price is known for, ``-`` for none."""
    cost, unpriced = cost_usd or 0.0, unpriced_calls or 0
    if not cost and not unpriced:
        return "-"
    if not cost:
        return f"unknown ({unpriced} unpriced)"
    return f"~{usd(cost)}" + (f" + {unpriced} unpriced" if unpriced else "")


def _model_call(r: Any) -> dict[str, Any]:
    """What one model-call row says: model, tokens, cost, the context after it."""
    attrs = _attrs(r)
    model = attrs.get("model")
    in_attr, out_attr = _int_attr(attrs, "input_tokens"), _int_attr(attrs, "output_tokens")
    if in_attr is not None or out_attr is not None:
        tokens_in, tokens_out = in_attr or 0, out_attr or 0
    else:
        tokens_in, tokens_out = max(0, r["input_growth"] or 0), max(0, r["output_growth"] or 0)
    return {
        "model": model if isinstance(model, str) and model else None,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "context_tokens": r["context_tokens"],
        "context_limit": r["context_limit"],
        # The call's own estimated cost (None: unpriced, or written before costs were kept).
        "cost_usd": r["cost_usd"],
        "cost_source": attrs.get("cost_source") if isinstance(attrs.get("cost_source"), str) else None,
    }


def _model_call_detail(call: dict[str, Any]) -> str:
    parts = [call["model"] or "model call", f"{call['input_tokens']:,} in / {call['output_tokens']:,} out tokens"]
    if call["cost_usd"] is not None:
        parts.append(f"~{usd(call['cost_usd'])}")
    elif call["cost_source"] == "unpriced":
        parts.append("cost unknown")
    ctx, limit = call["context_tokens"], call["context_limit"]
    if ctx is not None:
        parts.append(f"context {ctx:,} / {limit:,} ({ctx / limit:.0%})" if limit else f"context {ctx:,}")
    return " · ".join(parts)


def _forecast(r: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """A context forecast row: the level ahead, how many calls and seconds away."""
    calls, eta = attrs.get("calls"), attrs.get("eta_s")
    calls = calls if isinstance(calls, int) and not isinstance(calls, bool) else None
    eta = eta if isinstance(eta, int | float) and not isinstance(eta, bool) else None
    ahead = f"{r['threshold']:.0%}" if r["threshold"] is not None else "the next level"
    when = f" in about {calls} call{'s' if calls != 1 else ''}" if calls is not None else ""
    when += f" (~{eta:.0f}s)" if eta is not None and eta >= 1 else ""
    now = f"{r['ratio']:.0%}" if r["ratio"] is not None else "?"
    tokens = ""
    if r["context_tokens"] is not None and r["context_limit"]:
        tokens = f" ({r['context_tokens']:,} / {r['context_limit']:,})"
    return {
        "detail": f"context at {now}{tokens}: at this rate {ahead}{when}",
        "threshold": r["threshold"],
        "ratio": r["ratio"],
        "context_tokens": r["context_tokens"],
        "context_limit": r["context_limit"],
        "calls": calls,
        "eta_s": eta,
    }


def _budget(r: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """A budget warning row: which budget, how much of it is used."""
    scope, unit, subject = attrs.get("scope"), attrs.get("unit"), attrs.get("subject") or ""
    used, budget = attrs.get("used"), attrs.get("budget")
    if scope == "agent_day":
        agent, _, day = str(subject).rpartition(":")
        what = f"{agent}'s budget for {day}"
    elif scope in ("day", "month"):
        what = f"the budget for {subject}" if subject else f"the {scope}'s budget"
    else:
        what = "this task's budget"
    level = f"{r['threshold']:.0%}" if r["threshold"] is not None else "a level"

    def amount(v: Any) -> str:
        if not isinstance(v, int | float) or isinstance(v, bool):
            return "?"
        return usd(v) if unit == "usd" else f"{v:,.0f} tokens"

    return {
        "detail": f"{level} of {what} used: {amount(used)} of {amount(budget)}",
        "level": r["level"],
        "threshold": r["threshold"],
        "ratio": r["ratio"],
        "scope": scope,
        "unit": unit,
        "used": used,
        "budget": budget,
        "subject": subject,
    }


def _corrected(r: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """A correction after the task's end (the late-span rule): what the late span added."""
    added = {k: attrs.get(k) for k in ("input_tokens", "output_tokens", "cost_usd", "unpriced_calls")}
    n = {k: v if isinstance(v, int | float) and not isinstance(v, bool) else 0 for k, v in added.items()}
    parts = [f"+{n['input_tokens']:,} in / +{n['output_tokens']:,} out tokens"]
    parts += [f"+{usd(n['cost_usd'])}"] if n["cost_usd"] else []
    parts += [f"+{n['unpriced_calls']} unpriced"] if n["unpriced_calls"] else []
    arts = attrs.get("artifacts") if isinstance(attrs.get("artifacts"), list) else []
    parts += [f"+{len(arts)} artifact{'s' if len(arts) != 1 else ''}"] if arts else []
    detail = f"corrected: {' · '.join(parts)} from work that ended after the task"
    return {"detail": detail, "span_id": attrs.get("span_id"), **{f"added_{k}": v for k, v in n.items()}}


# Timeline rows of the warning kinds and corrections, each with its own facts and sentence.
_WARNINGS = {"context_forecast": _forecast, "budget_warning": _budget, "corrected": _corrected}


async def timeline(conn: Any, task: dict[str, Any]) -> list[dict[str, Any]]:
    """Start, checkpoints, warnings, artifacts, interventions and the end, in time order,
    each with the seconds since the entry before."""
    tid = task["task_id"]
    entries: list[dict[str, Any]] = [
        {"at": task["started_at"], "kind": "started", "detail": task.get("task_name") or ""}
    ]
    for r in await conn.fetch(_CHECKPOINTS_SQL, tid):
        entry: dict[str, Any] = {"at": r["at"], "kind": r["kind"], "event_id": r["event_id"]}
        if r["kind"] == "context_warning":
            detail = f"context {r['level']}: {r['context_tokens']:,} / {r['context_limit']:,} ({r['ratio']:.0%})"
        elif r["kind"] in _WARNINGS:
            facts = _WARNINGS[r["kind"]](r, _attrs(r))
            entry.update(facts)
            detail = facts.pop("detail")
        elif r["source"] == "tool_call":
            entry["kind"] = "tool_call"
            step, error = tool_step(_attrs(r))
            detail = step if error is None else f"{step} · failed: {error}"
        elif r["source"] == "model_call":
            entry["kind"] = "model_call"
            call = _model_call(r)
            entry.update(call)
            detail = _model_call_detail(call)
        else:
            parts = [r["status"]]
            if r["progress"] is not None:
                parts.append(f"{r['progress']:.0f}%")
            if r["step"]:
                parts.append(f"step {r['step']}")
            if r["message"]:
                parts.append(r["message"])
            detail = " · ".join(parts)
        entry["detail"] = detail
        entry["notes"] = json.loads(r["notes"])
        entries.append(entry)
    for r in await conn.fetch(
        "SELECT event_id, at, name, uri, kind FROM task_artifacts WHERE task_id = $1 ORDER BY time_ns, event_id", tid
    ):
        where = f" ({r['uri']})" if r["uri"] else ""
        entries.append({"at": r["at"], "kind": "artifact", "detail": f"{r['name']}{where}", "event_id": r["event_id"]})
    for r in await task_interventions(conn, tid):
        entries.append(
            {"at": r["at"], "kind": "intervention", "detail": intervention_detail(r), "event_id": r["intervention_id"]}
        )
    if task.get("ended_at") is not None:
        detail = task["status"]
        if task.get("error_type") or task.get("error_message"):
            detail += f": {task.get('error_type') or ''} {task.get('error_message') or ''}".rstrip()
        entries.append({"at": task["ended_at"], "kind": "finished", "detail": detail})
    order = {"started": 0, "finished": 2}
    entries.sort(key=lambda e: (e["at"], order.get(e["kind"], 1)))
    prev: datetime | None = None
    for e in entries:
        e["since_prev_s"] = None if prev is None else (e["at"] - prev).total_seconds()
        prev = e["at"]
    return entries


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
# annotation) and "<id>/<reply key>" (Slack replies and alerts). The prefix
# test is a byte range on the text_pattern_ops index (migration 0002), with no
# LIKE pattern to escape. A task id may itself contain "/", so a key that is,
# or is under, a longer task that is kept ("a/b" or "a/b/summary" when pruning
# "a" but not "a/b") is left alone: one primary-key probe per candidate.
_PRUNE_STATE_KEYS = (
    "DELETE FROM delivery_state WHERE key = ANY($1::text[])",
    """
    DELETE FROM delivery_state d
    USING unnest($1::text[]) AS p(id)
    WHERE d.key ~>=~ (p.id || '/') AND d.key ~<~ (p.id || '0')
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


async def prune(pool: Any, older_than_s: float, batch: int = 500, max_batches: int | None = None) -> int:
    """Delete tasks inactive for longer than ``older_than_s`` with all their rows.

    Bounded batches, each its own short transaction, and ``SKIP LOCKED`` so
    a task being written right now is left for the next run: no long locks.
    """
    cutoff = _since(older_than_s)
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
            for table in ("agent_checkpoints", "task_artifacts", "human_interventions", "task_logs", "quarantine"):
                await conn.execute(f"DELETE FROM {table} WHERE task_id = ANY($1::text[])", ids)
            for statement in _PRUNE_STATE_KEYS:
                await conn.execute(statement, ids)
            await conn.execute("DELETE FROM agent_tasks WHERE task_id = ANY($1::text[])", ids)
            deleted += len(ids)
        if len(ids) < batch:
            break
    for _ in range(max_batches or 1_000_000):
        async with pool.acquire() as conn:
            status = await conn.execute(PRUNE_ORPHAN_INTERVENTIONS, cutoff, batch)
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
