"""The oracle for the batched absorb: TaskMetrics as it counted events before,
one call per event (``_absorb_one``), the rest of the class shared.

The loop of ``TaskMetrics.absorb`` is written out for speed; this copy of the
plain per-event code is what ``test_prom_batched.py`` holds it to, scrape for
scrape. Keep it as it is: it is the reference, not code to improve.
"""

from __future__ import annotations

from spanvisor.events import (
    ArtifactAdded,
    BudgetWarning,
    Checkpoint,
    ContextForecast,
    ContextWarning,
    Event,
    HumanIntervention,
    TaskCorrected,
    TaskFinished,
    TaskResumed,
    TaskStalled,
    TaskStarted,
)
from spanvisor_prometheus.series import MAX_EXEMPLAR_TRACE_CHARS, Exemplar
from spanvisor_prometheus.spend import task_budget_ratio
from spanvisor_prometheus.state import TaskMetrics, _call_model, _clamp_ratio

_exemplar = tuple.__new__


class PerEventMetrics(TaskMetrics):
    """Every event through ``_absorb_one``, as the sink counted them before."""

    def absorb(self, events: list[Event] | tuple[Event, ...]) -> int:
        """Count a batch; returns how many events were new."""
        new = 0
        remember = self._seen.remember
        absorb_one = self._absorb_one
        with self.lock:
            for ev in events:
                # Each event once (a replay or a retried batch repeats them).
                if not remember(ev.event_id):
                    self.duplicates += 1
                    continue
                absorb_one(ev)
                new += 1
        return new

    def _absorb_one(self, ev: Event) -> None:
        t = ev.task
        if type(ev) is HumanIntervention:
            assert isinstance(ev, HumanIntervention)
            # Counted, and nothing else: a person's click is not the agent's
            # activity, and a view not known here (known=False: finished,
            # another replica's, or ids only) must not open or move a task.
            self.human.intervention(ev, Exemplar(t.trace_id[:MAX_EXEMPLAR_TRACE_CHARS], 1.0, ev.time_ns / 1e9))
            return
        agent = self.agents.label(t.agent_id)
        self.known_agents.add(agent)
        ts = ev.time_ns / 1e9
        trace = t.trace_id[:MAX_EXEMPLAR_TRACE_CHARS]
        one = _exemplar(Exemplar, (trace, 1.0, ts))
        if type(ev) is TaskCorrected:
            assert isinstance(ev, TaskCorrected)
            self._corrected(ev, agent, trace, one)
            return
        run = f"{t.task_id}/{t.run_id}"  # each run of a task id is a task of its own here
        task = self.open.get(run)
        if task is None:
            task = self._task(run, agent, (t.started_ns / 1e9) or ts, ts)
        if task is not None:
            # One label for one task: the agent as its first event named it,
            # so started and finished (and its tokens) count under one name.
            agent = task.agent
            # Every kind that reaches an open task is activity; only later:
            # a replayed old event cannot move the clock back.
            task.last_activity_s = max(task.last_activity_s, ts)
            if t.input_tokens > task.input_tokens or t.output_tokens > task.output_tokens:
                self._tokens(task, agent, t.input_tokens, t.output_tokens, trace, ts)
            ratio = t.context_ratio
            if ratio is not None:
                # A float in range is what _clamp_ratio would return as it is.
                task.ratio = ratio if type(ratio) is float and 0.0 <= ratio <= 1.0 else _clamp_ratio(ratio, task.ratio)
            # Most tasks have no budget: no ratio to work out (None either way).
            budget = task_budget_ratio(t) if t.budget_usd or t.budget_tokens else None
            if budget is not None and (task.budget_ratio is None or budget > task.budget_ratio):
                task.budget_ratio = budget
        kind = type(ev)
        if kind is Checkpoint:
            assert isinstance(ev, Checkpoint)
            if ev.source == "model_call":
                # One label per call: asking the cap twice would count an overflow twice.
                model = self.models.label(agent, _call_model(ev))
                self.model_calls.inc((agent, model), 1.0, one)
                if not self.spend.model_call(ev, agent, model, one):
                    self.rejected_values += 1
            else:
                self.checkpoints.inc((agent,), 1.0, one)
            self._progress(agent, ts)
        elif kind is TaskStarted:
            self.started.inc((agent, self.repos.label(agent, t.repo)), 1.0, one)
            self._progress(agent, ts)
        elif kind is ContextWarning:
            assert isinstance(ev, ContextWarning)
            self.warnings.inc((agent, ev.level), 1.0, one)
            if task is not None:
                task.ratio = _clamp_ratio(ev.ratio, task.ratio)
        elif kind is ContextForecast:
            self.spend.forecast(agent, one)
        elif kind is BudgetWarning:
            assert isinstance(ev, BudgetWarning)
            if not self.spend.budget_warning(ev, one):
                self.rejected_values += 1
        elif kind is TaskFinished:
            assert isinstance(ev, TaskFinished)
            self._finish(ev, agent, trace, ts)
        elif kind not in (ArtifactAdded, TaskStalled, TaskResumed):
            # (A stall shows in spanvisor_stalest_task_activity_timestamp_seconds already.)
            self.rejected_values += 1
