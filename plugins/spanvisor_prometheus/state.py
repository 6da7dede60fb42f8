"""Task metrics as plain numbers, derived from domain events.

No metrics library here: the sink feeds events in, and a custom collector
(``collectors.py``) reads a consistent snapshot when Prometheus scrapes.
Plain dicts keep the per-event cost to a few dictionary operations, and a
custom collector lets us emit exactly the series we want (no ``_created``).

Every event is counted once by ``event_id`` (a bounded window of the last
ids seen, fixed-width keys set aside once: see RecentKeys), because the
pipeline may deliver an event again after a retry or a replay.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from spanvisor.events import (
    ArtifactAdded,
    BudgetWarning,
    Checkpoint,
    ContextForecast,
    ContextWarning,
    DiffUpdated,
    Event,
    HumanIntervention,
    TaskCorrected,
    TaskFinished,
    TaskResumed,
    TaskStalled,
    TaskStarted,
)
from spanvisor.tracking.recent import RecentKeys
from spanvisor_prometheus.human import HumanMetrics
from spanvisor_prometheus.labels import MAX_LABEL_CHARS, LabelCap, PairCap
from spanvisor_prometheus.series import MAX_EXEMPLAR_TRACE_CHARS, CounterData, Exemplar, HistogramData
from spanvisor_prometheus.spend import SpendMetrics, task_budget_ratio

# Exemplar(trace, value, ts) without the NamedTuple's Python-level __new__
# (one or two an event): the same tuple of the same type.
_exemplar = tuple.__new__

EVENT_ID_BYTES = 16  # an event id: 32 hex digits (spanvisor.events.stable_id)

# Agent tasks run from seconds to hours.
DURATION_BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
)


class OpenTask:
    __slots__ = ("agent", "budget_ratio", "input_tokens", "last_activity_s", "output_tokens", "ratio", "started_s")

    def __init__(self, agent: str, started_s: float, seen_s: float) -> None:
        self.agent = agent
        self.started_s = started_s
        # Its latest start, checkpoint, context warning or artifact: the stall clock.
        self.last_activity_s = seen_s
        self.ratio = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        # The share of its own budget used (None: no budget); only grows.
        self.budget_ratio: float | None = None


class AgentGauges(NamedTuple):
    running: int
    worst_ratio: float
    oldest_start_s: float | None
    # The least recent last activity among the agent's open tasks.
    stalest_activity_s: float | None


class TaskMetrics:
    """Absorbs events; ``lock`` guards every read and write so a scrape from
    another thread (an admin server) sees a consistent snapshot."""

    def __init__(
        self,
        max_agents: int = 50,
        max_repos: int = 50,
        dedup_window: int = 100_000,
        max_open_tasks: int = 10_000,
        max_models: int = 50,
        clock: Callable[[], float] = time.time,
        results: tuple[tuple[str, bool], ...] = (),
    ) -> None:
        self.lock = threading.Lock()
        self.agents = LabelCap(max_agents)
        self.repos = PairCap(max_repos)
        # Models, like repos, are capped as (agent, model) pairs: the caps add.
        self.models = PairCap(max_models)
        self.dedup_window = dedup_window
        self.max_open_tasks = max_open_tasks
        # An event id is 32 hex digits: 16 bytes in a ring, with its hash and
        # a table slot (about 40 bytes an id, nothing allocated per event);
        # as an ordered dict of strings it was about 190 bytes an id and grew
        # for the first million spans of a long-running serve.
        self._seen = RecentKeys(dedup_window, width=EVENT_ID_BYTES)
        # Finished task ids, so a late event cannot reopen a finished task.
        # Oldest first. Ordered dicts, though their links cost about 50 bytes
        # a task more: a plain dict's first key, taken to evict it, is found
        # by scanning the holes earlier deletions left at its front, O(n) an
        # eviction once full (28 us at 100,000 keys against 0.2 us).
        self._finished: OrderedDict[str, None] = OrderedDict()
        self.open: OrderedDict[str, OpenTask] = OrderedDict()
        self.known_agents: set[str] = set()
        self.last_progress_s: dict[str, float] = {}
        self.started = CounterData("agent", "repo")
        self.finished = CounterData("agent", "repo", "outcome")
        # The agent's own checkpoints (events, state changes); model calls
        # are counted apart, or every call would count twice as progress.
        self.checkpoints = CounterData("agent")
        self.model_calls = CounterData("agent", "model")
        self.warnings = CounterData("agent", "level")
        self.tokens = CounterData("agent", "direction")
        self.duration = HistogramData(DURATION_BUCKETS, "agent", "outcome")
        # Cost, budgets and forecasts; ``clock`` says which day and month are current.
        self.spend = SpendMetrics(clock)
        # People's decisions, and the task results configured as metrics.
        self.human = HumanMetrics(results)
        self.duplicates = 0
        self.rejected_values = 0
        self.evicted_open = 0

    # --- writing -----------------------------------------------------------

    def absorb(self, events: list[Event] | tuple[Event, ...]) -> int:
        """Count a batch; returns how many events were new.

        The loop is written out for the commonest events (model calls and
        the agents' own checkpoints, most of any load): the names it needs
        bound once a batch, labels an admitted value takes found by one set
        lookup, counters updated in place. Every other kind goes through
        :meth:`_absorb_rest`, in the same order as before: one event at a
        time, so every series, exemplar and overflow count is what handling
        the events one by one gives (the property test holds it so).
        """
        new = 0
        remember = self._seen.remember
        agents, admitted = self.agents, self.agents.admitted
        models, model_pairs = self.models, self.models.admitted
        known_agents, open_get, progress = self.known_agents, self.open.get, self.last_progress_s
        tokens_values, tokens_exemplars = self.tokens.values, self.tokens.exemplars
        calls_values, calls_exemplars = self.model_calls.values, self.model_calls.exemplars
        checkpoints_values, checkpoints_exemplars = self.checkpoints.values, self.checkpoints.exemplars
        spend = self.spend
        cost_values, cost_exemplars = spend.cost.values, spend.cost.exemplars
        ledgers = spend.ledger.values()
        with self.lock:
            for ev in events:
                # Each event once (a replay or a retried batch repeats them).
                if not remember(ev.event_id):
                    self.duplicates += 1
                    continue
                new += 1
                kind = type(ev)
                t = ev.task
                if kind is HumanIntervention:
                    assert isinstance(ev, HumanIntervention)
                    # Counted, and nothing else: a person's click is not the agent's
                    # activity, and a view not known here (known=False: finished,
                    # another replica's, or ids only) must not open or move a task.
                    self.human.intervention(
                        ev, _exemplar(Exemplar, (t.trace_id[:MAX_EXEMPLAR_TRACE_CHARS], 1.0, ev.time_ns / 1e9))
                    )
                    continue
                agent_id = t.agent_id
                # An admitted value is its own label (LabelCap.label, without the call).
                agent = agent_id if agent_id in admitted else agents.label(agent_id)
                known_agents.add(agent)
                ts = ev.time_ns / 1e9
                trace = t.trace_id[:MAX_EXEMPLAR_TRACE_CHARS]
                one = _exemplar(Exemplar, (trace, 1.0, ts))
                if kind is TaskCorrected:
                    assert isinstance(ev, TaskCorrected)
                    self._corrected(ev, agent, trace, one)
                    continue
                run = f"{t.task_id}/{t.run_id}"  # each run of a task id is a task of its own here
                task = open_get(run)
                if task is None and t.former_id is not None:
                    task = self._renamed(run, f"{t.former_id}/{t.run_id}")
                if task is None:
                    task = self._task(run, agent, (t.started_ns / 1e9) or ts, ts)
                if task is not None:
                    # One label for one task: the agent as its first event named it,
                    # so started and finished (and its tokens) count under one name.
                    agent = task.agent
                    # Every kind that reaches an open task is activity; only later:
                    # a replayed old event cannot move the clock back.
                    task.last_activity_s = max(task.last_activity_s, ts)
                    # TaskView carries running totals; the counters grow by the difference.
                    inp, out = t.input_tokens, t.output_tokens
                    if inp > task.input_tokens:
                        d = inp - task.input_tokens
                        task.input_tokens = inp
                        key = (agent, "input")
                        tokens_values[key] = tokens_values.get(key, 0.0) + d
                        tokens_exemplars[key] = _exemplar(Exemplar, (trace, d, ts))
                    if out > task.output_tokens:
                        d = out - task.output_tokens
                        task.output_tokens = out
                        key = (agent, "output")
                        tokens_values[key] = tokens_values.get(key, 0.0) + d
                        tokens_exemplars[key] = _exemplar(Exemplar, (trace, d, ts))
                    # TaskView.context_ratio, without the property's call.
                    occupied, limit = t.context_tokens, t.context_limit
                    if occupied is not None and limit:
                        ratio = occupied / limit
                        # A float in range is what _clamp_ratio would return as it is.
                        task.ratio = (
                            ratio if type(ratio) is float and 0.0 <= ratio <= 1.0 else _clamp_ratio(ratio, task.ratio)
                        )
                    # Most tasks have no budget: no ratio to work out (None either way).
                    budget = task_budget_ratio(t) if t.budget_usd or t.budget_tokens else None
                    if budget is not None and (task.budget_ratio is None or budget > task.budget_ratio):
                        task.budget_ratio = budget
                if kind is not Checkpoint:
                    self._absorb_rest(ev, kind, agent, task, trace, ts, one)
                    continue
                assert isinstance(ev, Checkpoint)
                if ev.source == "model_call":
                    # The call's own model (_call_model), its label asked once: asking
                    # the cap twice would count an overflow twice.
                    attrs = ev.attributes
                    raw = attrs.get("model") if attrs else None
                    if not (isinstance(raw, str) and raw):
                        raw = t.model
                    value = (raw or "")[:MAX_LABEL_CHARS]
                    model = value if (agent, value) in model_pairs else models.label(agent, raw)
                    key = (agent, model)
                    calls_values[key] = calls_values.get(key, 0.0) + 1.0
                    calls_exemplars[key] = one
                    # SpendMetrics.model_call for its two common cases (no cost, or
                    # a finite non-negative float); anything else goes through it.
                    cost = attrs.get("cost_usd") if attrs else None
                    if cost is None:
                        if attrs and attrs.get("cost_source") == "unpriced":
                            spend.unpriced.inc((agent,), 1.0, one)
                    elif type(cost) is float and 0.0 <= cost < math.inf:
                        cost_values[key] = cost_values.get(key, 0.0) + cost
                        cost_exemplars[key] = _exemplar(Exemplar, (trace, cost, ts))
                        if cost and any(ledgers):
                            spend.add_spent(agent_id, ev.time_ns, cost)
                    elif not spend.model_call(ev, agent, model, one):
                        self.rejected_values += 1
                else:
                    own = (agent,)
                    checkpoints_values[own] = checkpoints_values.get(own, 0.0) + 1.0
                    checkpoints_exemplars[own] = one
                # max(): a replayed old event must not move the stall clock back.
                if ts > progress.get(agent, 0.0):
                    progress[agent] = ts
        return new

    def _absorb_rest(
        self, ev: Event, kind: type, agent: str, task: OpenTask | None, trace: str, ts: float, one: Exemplar
    ) -> None:
        """What an event other than a checkpoint counts (after :meth:`absorb`
        has moved its open task)."""
        if kind is TaskStarted:
            self.started.inc((agent, self.repos.label(agent, ev.task.repo)), 1.0, one)
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
        elif kind not in (ArtifactAdded, TaskStalled, TaskResumed, DiffUpdated):
            # (A stall shows in spanvisor_stalest_task_activity_timestamp_seconds already.)
            self.rejected_values += 1

    def _renamed(self, run: str, former: str) -> OpenTask | None:
        """The run's state kept under the id it had before its root named its
        own (``TaskView.former_id``), moved to ``run``: one run is one task
        here, never two (its tokens counted once, one running task). None: no
        state under the former id (a restart, or an id already moved)."""
        if former in self._finished:
            self._finished[run] = None
            if len(self._finished) > self.max_open_tasks:
                self._finished.popitem(last=False)
        task = self.open.pop(former, None)
        if task is not None:
            self.open[run] = task
        return task

    def _task(self, task_id: str, agent: str, started_s: float, seen_s: float) -> OpenTask | None:
        task = self.open.get(task_id)
        if task is not None:
            return task
        if task_id in self._finished:
            return None
        task = self.open[task_id] = OpenTask(agent, started_s, seen_s)
        if len(self.open) > self.max_open_tasks:
            # The tracker evicts abandoned tasks without an event; the oldest
            # task here is the likeliest abandoned one.
            self.open.popitem(last=False)
            self.evicted_open += 1
        return task

    def _tokens(self, task: OpenTask, agent: str, inp: int, out: int, trace: str, ts: float) -> None:
        # TaskView carries running totals; the counters grow by the difference.
        if inp > task.input_tokens:
            d = inp - task.input_tokens
            task.input_tokens = inp
            self.tokens.inc((agent, "input"), d, Exemplar(trace, d, ts))
        if out > task.output_tokens:
            d = out - task.output_tokens
            task.output_tokens = out
            self.tokens.inc((agent, "output"), d, Exemplar(trace, d, ts))

    def _corrected(self, ev: TaskCorrected, agent: str, trace: str, one: Exemplar) -> None:
        """A late span's correction of a finished task: what it added, counted
        once (by its event id, like every event). A task whose end was not
        seen here is still open: its view's totals say it, as for any event."""
        task, ts = self.open.get(f"{ev.task_id}/{ev.task.run_id}"), ev.time_ns / 1e9
        if task is None and ev.task.former_id is not None:
            task = self._renamed(f"{ev.task_id}/{ev.task.run_id}", f"{ev.task.former_id}/{ev.task.run_id}")
        if task is not None:
            self._tokens(task, agent, ev.task.input_tokens, ev.task.output_tokens, trace, ts)
        else:
            for kind, d in (("input", ev.added_input_tokens), ("output", ev.added_output_tokens)):
                if d > 0:
                    self.tokens.inc((agent, kind), d, Exemplar(trace, d, ts))
        self.spend.corrected(ev, agent, self.models.label(agent, ev.task.model), one)
        for fact in ev.facts:  # calls that ended before the end and arrived after it
            if isinstance(fact, Checkpoint) and fact.source == "model_call":
                self.model_calls.inc((agent, self.models.label(agent, _call_model(fact))), 1.0, one)

    def _progress(self, agent: str, ts: float) -> None:
        # max(): a replayed old event must not move the stall clock back.
        if ts > self.last_progress_s.get(agent, 0.0):
            self.last_progress_s[agent] = ts

    def _finish(self, ev: TaskFinished, agent: str, trace: str, ts: float) -> None:
        t = ev.task
        key = (agent, self.repos.label(agent, t.repo), ev.outcome)
        self.finished.inc(key, 1.0, Exemplar(trace, 1.0, ts))
        self.rejected_values += self.human.finished(ev, agent, Exemplar(trace, 1.0, ts))
        d = ev.duration_s
        if isinstance(d, int | float) and math.isfinite(d) and d >= 0:
            self.duration.observe((agent, ev.outcome), float(d), Exemplar(trace, float(d), ts))
        else:
            self.rejected_values += 1
        self.open.pop(f"{t.task_id}/{t.run_id}", None)
        self._finished[f"{t.task_id}/{t.run_id}"] = None
        if len(self._finished) > self.max_open_tasks:
            self._finished.popitem(last=False)

    # --- reading (call with ``lock`` held) ---------------------------------

    def agent_gauges(self) -> dict[str, AgentGauges]:
        running: dict[str, int] = dict.fromkeys(self.known_agents, 0)
        worst: dict[str, float] = dict.fromkeys(self.known_agents, 0.0)
        oldest: dict[str, float] = {}
        stalest: dict[str, float] = {}
        for task in self.open.values():
            a = task.agent
            running[a] = running.get(a, 0) + 1
            if task.ratio > worst.get(a, 0.0):
                worst[a] = task.ratio
            if a not in oldest or task.started_s < oldest[a]:
                oldest[a] = task.started_s
            if a not in stalest or task.last_activity_s < stalest[a]:
                stalest[a] = task.last_activity_s
        return {a: AgentGauges(running[a], worst.get(a, 0.0), oldest.get(a), stalest.get(a)) for a in running}

    def budget_ratios(self) -> dict[str, float]:
        return self.spend.ratios(t.budget_ratio for t in self.open.values() if t.budget_ratio is not None)

    @property
    def overflow(self) -> dict[str, int]:
        return {"agent": self.agents.overflowed, "repo": self.repos.overflowed, "model": self.models.overflowed}


def _call_model(cp: Checkpoint) -> str | None:
    """The model of the call itself: the tracker names it in the checkpoint's
    ``model`` attribute. The view's model is the task's main conversation's
    (an embeddings call does not change it), so it is only the fallback."""
    model = cp.attributes.get("model") if cp.attributes else None
    return model if isinstance(model, str) and model else cp.task.model


def _clamp_ratio(ratio: float, previous: float) -> float:
    # The contract is a 0-1 gauge; tokens above a (mis)configured limit read 1.
    if not isinstance(ratio, int | float) or not math.isfinite(ratio):
        return previous
    return min(max(float(ratio), 0.0), 1.0)
