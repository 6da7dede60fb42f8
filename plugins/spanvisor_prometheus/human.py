"""People's decisions and task results as metrics.

* ``spanvisor_interventions_total{action,outcome}``: every HumanIntervention,
  applied or denied. Both labels come from fixed lists (an action outside
  them reads ``other``), so the counter has at most 12 series.
* ``spanvisor_break_glass_total``: approvals that broke glass (applied),
  one series (the SpanvisorBreakGlassUsed alert watches it).
* ``spanvisor_budget_stops_total``: tasks cancelled by their own budget (a
  budget set to stop: the budget's applied cancel), one series.
* Task results (``agent.result.<name>``) only when configured by name in
  ``SPANVISOR_PROMETHEUS_RESULTS``: ``spanvisor_task_result{agent,name}``,
  the value the agent's last finished task reported, and with ``:sum`` also
  ``spanvisor_task_result_sum_total{agent,name}``, the sum over its finished
  tasks. The name label takes only configured names and the agent label is
  capped like everywhere else: at most agents x names series. Task ids are
  never labels; strings are not numbers and are left out.
"""

from __future__ import annotations

import math

from spanvisor.control.budgetstop import SOURCE as BUDGET
from spanvisor.events import HumanIntervention, TaskFinished
from spanvisor_prometheus.labels import OTHER
from spanvisor_prometheus.series import CounterData, Exemplar

ACTIONS = frozenset({"approve", "reject", "cancel", "retry", "acknowledge"})
OUTCOMES = frozenset({"applied", "denied"})


# Most result names the setting may list: each multiplies the agents.
class HumanMetrics:
    """Counts interventions and keeps the configured results; the caller
    (``TaskMetrics``) holds its lock."""

    def __init__(self, results: tuple[tuple[str, bool], ...] = ()) -> None:
        self.interventions = CounterData("action", "outcome")
        # Approvals that broke glass (one member of the break-glass group deciding alone):
        # one series, there from the start, so an alert sees its first increase.
        self.break_glass = CounterData()
        self.break_glass.values[()] = 0.0
        # Tasks a budget set to stop cancelled (the budget's applied cancel), there from the start too.
        self.budget_stops = CounterData()
        self.budget_stops.values[()] = 0.0
        self.result_names = {name: summed for name, summed in results}
        self.last_result: dict[tuple[str, str], float] = {}
        self.result_sum = CounterData("agent", "name")

    def intervention(self, ev: HumanIntervention, one: Exemplar | None) -> None:
        action = ev.decision.action if ev.decision.action in ACTIONS else OTHER
        outcome = ev.outcome if ev.outcome in OUTCOMES else OTHER
        # The exemplar's trace only when the task is known here (a bare view has none).
        self.interventions.inc((action, outcome), 1.0, one if ev.known and ev.task.trace_id else None)
        if ev.decision.break_glass and ev.outcome == "applied":
            self.break_glass.inc((), 1.0, one if ev.known and ev.task.trace_id else None)
        if ev.decision.source == BUDGET and ev.decision.action == "cancel" and ev.outcome == "applied":
            self.budget_stops.inc((), 1.0, one if ev.known and ev.task.trace_id else None)

    def finished(self, ev: TaskFinished, agent: str, one: Exemplar) -> int:
        """Record the configured results of a finished task; returns how many
        values were refused (not numbers, or a negative one for a sum)."""
        if not self.result_names:
            return 0
        refused = 0
        for r in ev.task.results:
            summed = self.result_names.get(r.name)
            if summed is None:
                continue
            value = r.value
            if isinstance(value, bool):
                value = 1.0 if value else 0.0
            if not isinstance(value, int | float) or not math.isfinite(value):
                refused += 1
                continue
            self.last_result[(agent, r.name)] = float(value)
            if summed:
                if value < 0:
                    refused += 1
                    continue
                self.result_sum.inc((agent, r.name), float(value), one._replace(value=float(value)))
        return refused
