"""What a model call does to its task: tokens, occupancy, cost and budgets,
and the events that say so.

A call that ends with token usage gives a ``Checkpoint(source="model_call")``
naming the call's own model, operation, tokens and cost (a tool that ends
gives a ``Checkpoint(source="tool_call")``); then a
``ContextWarning`` per level the fullest conversation crossed, a
``ContextForecast`` when it is about to cross the next one, and a
``BudgetWarning`` per budget level its cost or tokens crossed (the task's,
its agent's today, everyone's today and this month).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from spanvisor.events import (
    BudgetScope,
    BudgetUnit,
    BudgetWarning,
    ContextForecast,
    ContextWarning,
    Event,
    stable_id,
)
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData
from spanvisor.tracking import budgets
from spanvisor.tracking.budgets import BudgetState
from spanvisor.tracking.cost import EPSILON, Crossing
from spanvisor.tracking.views import build_checkpoint

if TYPE_CHECKING:
    from spanvisor.tracking.taskstate import TaskState


def model_call(state: TaskState, span: SpanData, notes: list[str]) -> list[Event]:
    a = span.attributes
    raw_in, raw_out = cv.usage(a)
    t_in = sz.tokens(raw_in, "input_tokens", notes)
    t_out = sz.tokens(raw_out, "output_tokens", notes)
    if t_in is None and t_out is None:
        return []
    w = state.working
    end = span.end_ns or 0
    model = sz.name(cv.model_name(a), "model", notes)
    cost = state.settings.pricer.price(a, model, t_in or 0, t_out or 0, end)
    # Summed in whole nano-dollars, so every arrival order gives the same total.
    state.cost_nano += round((cost.usd or 0.0) * 1e9)
    changes: dict[str, Any] = {
        "input_tokens": w["input_tokens"] + (t_in or 0),
        "output_tokens": w["output_tokens"] + (t_out or 0),
        "cost_usd": state.cost_nano / 1e9,
        "unpriced_calls": w["unpriced_calls"] + (cost.usd is None),
    }
    # Occupancy is the latest call's prompt plus its output, per conversation
    # (latest: started last, see tracking/occupancy.py).
    ids, times = (span.span_id, span.parent_id), (span.start_ns, end)
    changes.update(state.context.model_call(a, ids, (t_in or 0) + (t_out or 0), model, times))
    if not state.finished:
        changes["status"] = state.fields.status_after(w, changes)
    state.update(**changes)
    t = state.next_time(end)
    # The call's own model, tokens and cost: the view shows the fullest
    # conversation's model, which an embeddings call does not change. Keys
    # in this order, those with no value left out.
    attributes: dict[str, object] = {} if model is None else {"model": model}
    operation = sz.name(a.get(cv.GEN_AI_OPERATION), cv.GEN_AI_OPERATION, notes)
    if operation is not None:
        attributes["operation"] = operation
    attributes["input_tokens"] = t_in or 0
    attributes["output_tokens"] = t_out or 0
    if cost.usd is not None:
        attributes["cost_usd"] = cost.usd
    attributes["cost_source"] = cost.source
    cp = build_checkpoint(
        state.event_id("model", span.span_id), t, state.view, tuple(notes), "model_call", ("tokens",), attributes
    )
    # The budget is published by budget_warnings below, nothing changing before it.
    out: list[Event] = [cp, *context_warnings(state, t, notes)]
    out.extend(_forecast(state, span.span_id, t, notes))
    out.extend(_budgets(state, cost.usd, t, notes))
    return out


def tool_call(state: TaskState, span: SpanData, notes: list[str]) -> list[Event]:
    """A tool that ended: a ``Checkpoint(source="tool_call")`` naming it, how
    long it ran and, when it failed, why. It changes no field of the task."""
    end = span.end_ns or 0
    attributes: dict[str, object] = {
        "tool": sz.name(cv.tool_name(span.attributes, span.name), "tool.name", notes) or "tool",
        "duration_s": round(max(0, end - span.start_ns) / 1e9, 3),
    }
    if span.error:
        failure = next((e.attributes for e in span.events if e.name == cv.EVENT_EXCEPTION), None)
        raw = (failure or {}).get("exception.message") or span.status_message or "error"
        attributes["error"] = sz.text(raw, "tool.error", notes, 500) or "error"
    t = state.next_time(end)
    return [
        build_checkpoint(state.event_id("tool", span.span_id), t, state.view, tuple(notes), "tool_call", (), attributes)
    ]


def publish_budget(state: TaskState) -> None:
    """Let the agent read its task's budget state (tracking/budgets.py)."""
    w = state.working
    key = (w["trace_id"], w["root_span_id"])
    if state.finished or (w["budget_usd"] is None and w["budget_tokens"] is None):
        budgets.publish(key, None)
        return
    used_tokens = w["input_tokens"] + w["output_tokens"]
    budgets.publish(
        key, BudgetState(w["cost_usd"], w["budget_usd"], used_tokens, w["budget_tokens"], w["unpriced_calls"])
    )


def context_warnings(state: TaskState, now: int, notes: list[str]) -> list[Event]:
    w = state.working
    out: list[Event] = []
    for level, n, ratio in state.context.crossed(w["context_tokens"], w["context_limit"]):
        t = state.next_time(now)
        out.append(
            ContextWarning(
                event_id=state.event_id("context", level, n),
                time_ns=t,
                task=state.view,
                notes=tuple(notes),
                level="critical" if state.context.level_name(level) == "critical" else "warning",
                threshold=level,
                ratio=ratio,
                tokens=w["context_tokens"],
                limit=w["context_limit"],
            )
        )
    return out


def _forecast(state: TaskState, span_id: str, now: int, notes: list[str]) -> list[Event]:
    found = state.context.forecast()
    if found is None:
        return []
    level, n_calls, eta_s, tokens, limit = found
    t = state.next_time(now)
    return [
        ContextForecast(
            event_id=state.event_id("forecast", level, span_id),
            time_ns=t,
            task=state.view,
            notes=tuple(notes),
            threshold=level,
            ratio=tokens / limit,
            tokens=tokens,
            limit=limit,
            calls=n_calls,
            eta_s=eta_s,
        )
    ]


def _budgets(state: TaskState, usd: float | None, now: int, notes: list[str]) -> list[Event]:
    w = state.working
    ledger = state.settings.ledger.add(w["agent_id"], usd, now) if usd else []
    return budget_warnings(state, now, notes, ledger)


def budget_warnings(state: TaskState, now: int, notes: list[str], ledger: Sequence[Crossing] = ()) -> list[Event]:
    """The task's own budget levels reached and not said yet (whatever order the
    calls and the root's budget arrived in), then the ledger's crossings."""
    w = state.working
    if not ledger and w["budget_usd"] is None and w["budget_tokens"] is None:
        # The usual call: no budget on the task, no day or month level crossed.
        publish_budget(state)
        return []
    found: list[tuple[BudgetScope, BudgetUnit, str, float, float, float]] = []
    used_tokens = w["input_tokens"] + w["output_tokens"]
    for unit, used, budget in (("usd", w["cost_usd"], w["budget_usd"]), ("tokens", used_tokens, w["budget_tokens"])):
        if not budget or budget <= 0:
            continue
        for level in state.settings.budgets.levels:
            if used >= level * budget - EPSILON and (unit, level) not in state.budget_said:
                state.budget_said |= {(unit, level)}
                found.append(("task", unit, "", level, used, budget))  # type: ignore[arg-type]
    for scope, subject, level, used, budget in ledger:
        found.append((scope, "usd", subject, level, used, budget))
    publish_budget(state)
    out: list[Event] = []
    for scope, unit, subject, level, used, budget in found:
        t = state.next_time(now)
        out.append(
            BudgetWarning(
                # Once per level and scope (and day or month): whichever call crossed it.
                # A ledger scope's id names no task, so replicas (or a restart) that
                # both say it give one id, which the sinks dedupe (budgets/spend.py).
                event_id=(
                    state.event_id("budget", scope, unit, subject, level)
                    if scope == "task"
                    else stable_id("budget", scope, unit, subject, level)
                ),
                time_ns=t,
                task=state.view,
                notes=tuple(notes),
                scope=scope,
                unit=unit,
                level=level,
                used=float(used),
                budget=float(budget),
                subject=subject,
            )
        )
    return out


__all__ = ["budget_warnings", "context_warnings", "model_call", "publish_budget", "tool_call"]
