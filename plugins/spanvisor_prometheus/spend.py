"""Cost, budget and forecast metrics, from the tracker's events.

* ``cost_usd_total{agent,model}``: the estimated cost each model-call
  checkpoint names (its ``cost_usd`` attribute: the instrumentation's own
  figure, an operator's price or genai-prices). Calls with no known price add
  nothing here and count in ``unpriced_model_calls_total{agent}``.
* ``budget_warnings_total{scope,level}``: one per ``BudgetWarning``; level
  ``critical`` at or above 100 % of the budget, else ``warning`` (as the audit
  trail's rows say it).
* ``context_forecasts_total{agent}``: one per ``ContextForecast``.
* ``budget_used_ratio{scope}``: per scope kind, the highest share of a
  budget used now. ``task``: the worst open task with a budget, from its view
  (cost over ``budget_usd``, tokens over ``budget_tokens``). ``agent_day``,
  ``day``, ``month``: the tracker keeps those totals per process and says them
  only in its warnings, so the ratio starts with a scope's first warning of
  the current UTC day or month (used over budget) and grows with the cost of
  later calls of the same agent and day, day or month. A scope with no
  budget known now is absent.

Labels stay bounded: four scopes, two levels, no task ids, days or months.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final

from spanvisor.events import BudgetWarning, Checkpoint, TaskCorrected, TaskView
from spanvisor_prometheus.series import CounterData, Exemplar

SCOPES: Final = ("task", "agent_day", "day", "month")
LEDGER_SCOPES: Final = ("agent_day", "day", "month")
# Subjects (an agent's day) remembered per scope: memory only, never labels.
MAX_SUBJECTS: Final = 10_000


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _periods(time_ns: int) -> tuple[str, str]:
    when = datetime.fromtimestamp(max(0, time_ns) / 1e9, UTC)
    return when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")


def _period(scope: str, subject: str) -> str:
    """The day or month a ledger subject belongs to ("rivet:2026-11-22" -> "2026-11-22")."""
    return subject.rpartition(":")[2] if scope == "agent_day" else subject


def task_budget_ratio(v: TaskView) -> float | None:
    """The share of its own budget a task has used (the larger of dollars and
    tokens), or None when it has no budget."""
    shares: list[float] = []
    if _number(v.budget_usd) and v.budget_usd and _number(v.cost_usd):
        shares.append(v.cost_usd / v.budget_usd)
    tokens = v.input_tokens + v.output_tokens
    if _number(v.budget_tokens) and v.budget_tokens and _number(tokens):
        shares.append(tokens / v.budget_tokens)
    found = max(shares, default=None)
    return found if found is not None and math.isfinite(found) else None


class SpendMetrics:
    """The counters and ledger ratios; used under ``TaskMetrics.lock``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.cost = CounterData("agent", "model")
        self.unpriced = CounterData("agent")
        self.forecasts = CounterData("agent")
        self.budget_warnings = CounterData("scope", "level")
        # scope -> subject -> [used, budget] (dollars), for the ledger scopes.
        self.ledger: dict[str, dict[str, list[float]]] = {s: {} for s in LEDGER_SCOPES}
        # The latest day or month each ledger scope has heard of.
        self.latest: dict[str, str] = {}

    def model_call(self, cp: Checkpoint, agent: str, model: str, exemplar: Exemplar) -> bool:
        """Count one model call's cost; False when its cost is not a usable number."""
        attrs = cp.attributes or {}
        cost = attrs.get("cost_usd")
        if cost is None:
            if attrs.get("cost_source") == "unpriced":
                self.unpriced.inc((agent,), 1.0, exemplar._replace(value=1.0))
            return True
        if not _number(cost):
            return False
        usd = float(cost)  # type: ignore[arg-type]
        self.cost.inc((agent, model), usd, exemplar._replace(value=usd))
        if usd:
            self.add_spent(cp.task.agent_id, cp.time_ns, usd)
        return True

    def corrected(self, ev: TaskCorrected, agent: str, model: str, exemplar: Exemplar) -> None:
        """What a late span added to a finished task (its ``TaskCorrected``):
        its cost under the task's model, and its unpriced calls."""
        if ev.added_unpriced_calls > 0:
            n = float(ev.added_unpriced_calls)
            self.unpriced.inc((agent,), n, exemplar._replace(value=n))
        usd = ev.added_cost_usd
        if _number(usd) and usd:
            self.cost.inc((agent, model), float(usd), exemplar._replace(value=float(usd)))
            self.add_spent(ev.task.agent_id, ev.time_ns, float(usd))

    def forecast(self, agent: str, exemplar: Exemplar) -> None:
        self.forecasts.inc((agent,), 1.0, exemplar)

    def budget_warning(self, ev: BudgetWarning, exemplar: Exemplar) -> bool:
        """Count a budget warning; False when its scope or numbers are unusable."""
        if ev.scope not in SCOPES or not all(_number(x) for x in (ev.level, ev.used, ev.budget)) or not ev.budget:
            return False
        level = "critical" if ev.level >= 1.0 else "warning"
        self.budget_warnings.inc((ev.scope, level), 1.0, exemplar)
        if ev.scope in LEDGER_SCOPES and isinstance(ev.subject, str) and ev.subject:
            subjects = self.ledger[ev.scope]
            entry = subjects.get(ev.subject)
            period = _period(ev.scope, ev.subject)
            if entry is None and period >= self.latest.get(ev.scope, ""):
                # (A warning of an earlier day or month, replayed late, is counted, not kept.)
                self.latest[ev.scope] = period
                self._make_room(ev.scope, subjects, period)
                subjects[ev.subject] = [float(ev.used), float(ev.budget)]
            elif entry is not None:
                # The warning's total includes every call before it: it wins
                # over what this sink added, unless that is already more.
                entry[0] = max(entry[0], float(ev.used))
                entry[1] = float(ev.budget)
        return True

    def add_spent(self, agent_id: str, time_ns: int, usd: float) -> None:
        """A later call's cost, added to the ledger subjects already warned about
        (the day is the event's, as the tracker's ledger takes it)."""
        if not any(self.ledger.values()):
            return  # nothing warned about yet (always, with no budgets): no day to name
        day, month = _periods(time_ns)
        for scope, subject in (("agent_day", f"{agent_id}:{day}"), ("day", day), ("month", month)):
            entry = self.ledger[scope].get(subject)
            if entry is not None:
                entry[0] += usd

    @staticmethod
    def _make_room(scope: str, subjects: dict[str, list[float]], period: str) -> None:
        # Earlier days or months are over: forget them; then stay bounded.
        for old in [s for s in subjects if _period(scope, s) < period]:
            del subjects[old]
        while len(subjects) >= MAX_SUBJECTS:
            del subjects[next(iter(subjects))]

    def ratios(self, task_ratios: Iterable[float]) -> dict[str, float]:
        """scope -> the highest share of a budget used now (scopes with none left out)."""
        out: dict[str, float] = {}
        worst = max(task_ratios, default=None)
        if worst is not None:
            out["task"] = worst
        day, month = _periods(int(self.clock() * 1e9))
        current = {"agent_day": day, "day": day, "month": month}
        for scope, subjects in self.ledger.items():
            shares = [u / b for s, (u, b) in subjects.items() if b and _period(scope, s) == current[scope]]
            if shares:
                out[scope] = max(shares)
        return {s: out[s] for s in SCOPES if s in out}


__all__ = ["LEDGER_SCOPES", "SCOPES", "SpendMetrics", "task_budget_ratio"]
