"""A task's budgets: which it has, which levels its spending crossed, and
what the agent may read of them (the concern of budgets and cost).

A task's budget comes from its root (``agent.budget.usd`` /
``agent.budget.tokens``) or, when the root sets none, its agent's default
once the agent is known. Each level is said once per unit, whatever order
the calls and the root's budget arrived in; the day and month levels are the
:class:`~spanvisor.budgets.ledger.Ledger`'s, added to per priced call. What
the agent reads in-process is published to :mod:`.budgets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spanvisor.budgets import board
from spanvisor.budgets.board import BudgetState
from spanvisor.budgets.ledger import EPSILON, Crossing
from spanvisor.events import BudgetScope, BudgetUnit, BudgetWarning, Event, stable_id
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.record import TaskRecord


def read_root(state: TaskRecord, a: Any, notes: list[str]) -> bool:
    """The task's budgets from its root's attributes; True when one changed."""
    stop = sz.flag(a.get(cv.BUDGET_STOP), cv.BUDGET_STOP, notes) if cv.BUDGET_STOP in a else None
    stop_changed = stop is not None and stop != state.budget_stop
    if stop_changed:
        state.budget_stop = stop  # read before the budget: a crossing the budget says at once may stop
    usd = sz.number(a.get(cv.BUDGET_USD), cv.BUDGET_USD, notes) if cv.BUDGET_USD in a else None
    tokens = sz.tokens(a.get(cv.BUDGET_TOKENS), cv.BUDGET_TOKENS, notes) if cv.BUDGET_TOKENS in a else None
    w = state.working
    changes: dict[str, Any] = {}
    if usd is not None and usd > 0:
        state.budget_from_root = True
        if usd != w.budget_usd:
            changes["budget_usd"] = usd
    if tokens and tokens != w.budget_tokens:
        changes["budget_tokens"] = tokens
    if changes:
        state.update(**changes)
    return bool(changes) or stop_changed


def agent_default(state: TaskRecord) -> bool:
    """The agent's default task budget, once the agent is known and the
    root set none; True when it changed."""
    if state.budget_from_root:
        return False
    b = state.settings.budgets
    default = b.for_agent(b.task_usd, state.working.agent_id)
    if default == state.working.budget_usd:
        return False
    state.update(budget_usd=default)
    return True


def publish(state: TaskRecord) -> None:
    """Let the agent read its task's budget state (budgets/board.py)."""
    w = state.working
    if state.finished or (w.budget_usd is None and w.budget_tokens is None):
        if state.budget_published:  # most tasks never have a budget: nothing to take back
            board.publish((w.trace_id, w.root_span_id), None)
            state.budget_published = False
        return
    used_tokens = w.input_tokens + w.output_tokens
    board.publish(
        (w.trace_id, w.root_span_id),
        BudgetState(w.cost_usd, w.budget_usd, used_tokens, w.budget_tokens, w.unpriced_calls),
    )
    state.budget_published = True


def after_call(state: TaskRecord, usd: float | None, now: int, notes: list[str]) -> list[Event]:
    """A priced call's spending added to the ledger, and the levels it crossed."""
    ledger = state.settings.ledger.add(state.working.agent_id, usd, now) if usd else []
    return warnings(state, now, notes, ledger)


def warnings(state: TaskRecord, now: int, notes: list[str], ledger: Sequence[Crossing] = ()) -> list[Event]:
    """The task's own budget levels reached and not said yet (whatever order the
    calls and the root's budget arrived in), then the ledger's crossings."""
    w = state.working
    if not ledger and w.budget_usd is None and w.budget_tokens is None:
        # The usual call: no budget on the task, no day or month level crossed.
        publish(state)
        return []
    found: list[tuple[BudgetScope, BudgetUnit, str, float, float, float, str]] = []
    used_tokens = w.input_tokens + w.output_tokens
    stop = stops(state)
    levels = state.settings.budgets.levels
    if stop and 1.0 not in levels:  # a budget set to stop always says its 100 %: the line that stops it
        levels = tuple(sorted((*levels, 1.0)))
    for unit, used, budget in (("usd", w.cost_usd, w.budget_usd), ("tokens", used_tokens, w.budget_tokens)):
        if not budget or budget <= 0:
            continue
        for level in levels:
            if used >= level * budget - EPSILON and (unit, level) not in state.budget_said:
                state.budget_said |= {(unit, level)}
                found.append(("task", unit, "", level, used, budget, ""))  # type: ignore[arg-type]
        if stop and STOPPED not in state.budget_said and used >= budget - EPSILON:
            # Once per task, at the first call (or budget) that reaches it, whichever unit.
            state.budget_said |= {STOPPED}
            said = next((i for i, f in enumerate(found) if f[1] == unit and f[3] == 1.0), None)
            if said is not None:
                found[said] = (*found[said][:6], "stop")
            else:  # its 100 % said before stopping was asked (a root read late): said again, as the stop
                found.append(("task", unit, "", 1.0, used, budget, "again"))  # type: ignore[arg-type]
    for scope, subject, level, used, budget in ledger:
        found.append((scope, "usd", subject, level, used, budget, ""))
    publish(state)
    out: list[Event] = []
    for scope, unit, subject, level, used, budget, stopping in found:
        t = state.next_time(now)
        out.append(
            BudgetWarning(
                # Once per level and scope (and day or month): whichever call crossed it.
                # A ledger scope's id names no task, so replicas (or a restart) that
                # both say it give one id, which the sinks dedupe (budgets/spend.py).
                event_id=(
                    state.event_id("budget", scope, unit, subject, level, *(("stop",) if stopping == "again" else ()))
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
                stops=bool(stopping),
            )
        )
    return out


# In ``budget_said`` once the task's own budget stopped it (a unit no level has).
STOPPED = ("stop", 1.0)


def stops(state: TaskRecord) -> bool:
    """Whether reaching the task's own budget cancels it: its root's
    ``agent.budget.stop``, else its agent's default (``SPANVISOR_BUDGET_STOP``);
    never a task that ended."""
    if state.finished:
        return False
    own = state.budget_stop
    return own if own is not None else state.settings.budgets.stops(state.working.agent_id)


__all__ = ["STOPPED", "after_call", "agent_default", "publish", "read_root", "stops", "warnings"]
