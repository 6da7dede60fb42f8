"""``spanvisor task``'s timeline: a task's start, checkpoints, model and tool
calls, warnings, artifacts, people's decisions and its end, read from the
audit trail in time order, each row said as a person reads it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from spanvisor.display.readable import tool_step, usd

from .humanqueries import detail as intervention_detail
from .humanqueries import task_interventions

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
    raw_arts, raw_facts = attrs.get("artifacts"), attrs.get("facts")
    arts: list[Any] = raw_arts if isinstance(raw_arts, list) else []
    parts += [f"+{len(arts)} artifact{'s' if len(arts) != 1 else ''}"] if arts else []
    facts: list[Any] = raw_facts if isinstance(raw_facts, list) else []
    if attrs.get("arrived_late") is True:
        kept = f" ({len(facts)} event{'s' if len(facts) != 1 else ''} kept, marked arrived late)"
        detail = f"corrected: {' · '.join(parts)} from work that ended before the task but arrived after it{kept}"
    else:
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
    for r in await task_interventions(conn, tid, task.get("former_id")):
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
