"""The budget concern alone (tracking/taskbudget.py): a TaskRecord in, its
budgets read, levels said once, what the agent reads published."""

from __future__ import annotations

from typing import Any

from spanvisor.budgets import board
from spanvisor.budgets.ledger import BudgetSettings
from spanvisor.events import BudgetWarning
from spanvisor.spans import conventions as cv
from spanvisor.tracking import taskbudget
from spanvisor.tracking.record import TaskRecord
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.views import new_view

TRACE = "0" * 31 + "b"
ROOT = "0" * 15 + "2"
T0 = 1_800_000_000 * 10**9


def _record(budget_settings: BudgetSettings | None = None, trace: str = TRACE) -> TaskRecord:
    s = TrackerSettings(budgets=budget_settings or BudgetSettings())
    view = new_view(task_id="t", trace_id=trace, root_span_id=ROOT, agent_id="rivet", started_ns=T0, updated_ns=T0)
    return TaskRecord(view, s, last_ns=T0)


def _spend(rec: TaskRecord, usd: float, tokens: int = 0) -> None:
    """What a priced call leaves on the record (calls.model_call's part)."""
    rec.cost_nano += round(usd * 1e9)
    w = rec.working
    rec.update(cost_usd=rec.cost_nano / 1e9, input_tokens=w["input_tokens"] + tokens)


def _said(events: list[Any]) -> list[tuple[str, str, float]]:
    return [(e.scope, e.unit, e.level) for e in events if isinstance(e, BudgetWarning)]


def test_the_roots_budget_wins_over_the_agents_default() -> None:
    rec = _record(BudgetSettings(task_usd={"rivet": 5.0}))
    assert taskbudget.agent_default(rec) and rec.working["budget_usd"] == 5.0  # the agent is known
    assert not taskbudget.agent_default(rec)  # said once
    assert taskbudget.read_root(rec, {cv.BUDGET_USD: 2.0, cv.BUDGET_TOKENS: 1000}, [])
    assert (rec.working["budget_usd"], rec.working["budget_tokens"]) == (2.0, 1000)
    assert not taskbudget.agent_default(rec)  # the root set one: the default never applies
    assert not taskbudget.read_root(rec, {cv.BUDGET_USD: 2.0}, [])  # nothing changed


def test_junk_budgets_are_ignored_with_a_note() -> None:
    rec = _record()
    notes: list[str] = []
    assert not taskbudget.read_root(rec, {cv.BUDGET_USD: "lots", cv.BUDGET_TOKENS: -3}, notes)
    assert rec.working["budget_usd"] is None and notes


def test_each_level_is_said_once_per_unit() -> None:
    rec = _record()
    taskbudget.read_root(rec, {cv.BUDGET_USD: 1.0, cv.BUDGET_TOKENS: 100}, [])
    _spend(rec, 0.5, 50)
    assert taskbudget.after_call(rec, 0.5, T0 + 1, []) == []
    _spend(rec, 0.3, 30)
    first = taskbudget.after_call(rec, 0.3, T0 + 2, [])
    assert _said(first) == [("task", "usd", 0.8), ("task", "tokens", 0.8)]
    _spend(rec, 0.05, 5)
    assert taskbudget.after_call(rec, 0.05, T0 + 3, []) == []
    _spend(rec, 1.0, 100)
    assert _said(taskbudget.after_call(rec, 1.0, T0 + 4, [])) == [("task", "usd", 1.0), ("task", "tokens", 1.0)]
    ids = [e.event_id for e in first]
    assert len(set(ids)) == len(ids)


def test_the_days_budget_is_the_ledgers_and_names_no_task() -> None:
    rec = _record(BudgetSettings(day_usd=1.0, levels=(1.0,)))
    other = _record(BudgetSettings(day_usd=1.0, levels=(1.0,)))
    other.settings = rec.settings  # two tasks of one tracker share its ledger
    assert taskbudget.after_call(rec, 0.6, T0 + 1, []) == []
    (w,) = taskbudget.after_call(other, 0.6, T0 + 2, [])
    assert isinstance(w, BudgetWarning) and (w.scope, w.level, w.budget) == ("day", 1.0, 1.0)
    assert abs(w.used - 1.2) < 1e-9
    assert taskbudget.after_call(rec, 0.6, T0 + 3, []) == []  # said once a day


def test_the_agent_reads_its_budget_while_the_task_is_open() -> None:
    trace = "0" * 31 + "d"  # a task of its own: what is published is per process
    rec = _record(trace=trace)
    taskbudget.publish(rec)
    assert board.lookup(trace, ROOT) is None  # no budget: nothing to read
    taskbudget.read_root(rec, {cv.BUDGET_USD: 1.0}, [])
    _spend(rec, 1.5)
    taskbudget.warnings(rec, T0 + 1, [])
    seen = board.lookup(trace, ROOT)
    assert seen is not None and seen.over and seen.used_usd == 1.5
    rec.finished = True
    taskbudget.publish(rec)
    assert board.lookup(trace, ROOT) is None
