"""A budget set to stop, on the tracker's paths (start order: the processor;
end order: the exporter and the receiver): the task's own budget, once
reached, is said once as the ``BudgetWarning`` that ``stops``; a warn-only
task never says it. What the pipeline makes of it (the cancel) is
tests/core/test_budget_stop_pipeline.py's."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.budgets.ledger import BudgetSettings
from spanvisor.config import Config
from spanvisor.control import budgetstop
from spanvisor.display.thread import budget_line
from spanvisor.events import BudgetWarning, Checkpoint, Event
from spanvisor.spans import conventions as cv
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream
from ._trees import FakeClock, SpanSpec, feed_end_order, feed_start_order, stamp_trees

TRACE = "0" * 31 + "d"
ROOT = "00000000000000d0"
NOV_22 = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp() * 1e9)
GAP = 1_000_000_000


def task(costs: list[int], root_attrs: dict[str, object], agent: str = "rivet") -> list[SpanSpec]:
    """A task of model calls, each reporting its own cost (in cents) and 10 + 5 tokens."""
    r = SpanSpec(TRACE, ROOT, None, "task", NOV_22, NOV_22 + GAP * (len(costs) + 2))
    r.start_attrs = {cv.TASK_NAME: "spender", cv.AGENT_ID: agent, **root_attrs}
    specs = [r]
    for i, cents in enumerate(costs):
        begin = NOV_22 + GAP * (i + 1)
        c = SpanSpec(TRACE, f"{ROOT[:12]}{i + 1:04x}", ROOT, "chat", begin, begin + GAP // 2)
        c.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "my-model"}
        c.updates = [(begin + GAP // 2, {cv.GEN_AI_INPUT: 10, cv.GEN_AI_OUTPUT: 5, cv.GEN_AI_COST: cents / 100})]
        specs.append(c)
    stamp_trees(specs)
    return specs


def run(specs: list[SpanSpec], s: TrackerSettings, end_order: bool = False, seed: int = 3) -> list[Event]:
    if end_order:
        clock = FakeClock()
        events = feed_end_order(TaskTracker(s, clock=clock), specs, random.Random(seed), True, clock, 3)
    else:
        events = feed_start_order(TaskTracker(s), specs)
    check_stream(events, all_finished=True)
    return events


def stops(events: list[Event]) -> list[BudgetWarning]:
    return [e for e in events if isinstance(e, BudgetWarning) and e.stops]


def settings_(stop: frozenset[str] = frozenset(), **kw: object) -> TrackerSettings:
    return TrackerSettings(budgets=BudgetSettings(stop=stop, **kw))  # type: ignore[arg-type]


# How a task comes to be set to stop: its root, the agent's default, or neither.
MODES = ("root", "default", "root_says_no", "warn_only")


def _setup(mode: str, budget_cents: int) -> tuple[dict[str, object], TrackerSettings]:
    attrs: dict[str, object] = {cv.BUDGET_USD: budget_cents / 100}
    if mode == "root":
        return {**attrs, cv.BUDGET_STOP: True}, settings_()
    if mode == "default":
        return attrs, settings_(frozenset({"rivet"}))
    if mode == "root_says_no":
        return {**attrs, cv.BUDGET_STOP: "false"}, settings_(frozenset({"*"}))
    return attrs, settings_()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    costs=st.lists(st.integers(0, 80), min_size=1, max_size=10),
    budget_cents=st.integers(1, 300),
    mode=st.sampled_from(MODES),
    end_order=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_a_task_set_to_stop_says_it_once_at_the_first_call_that_reaches_its_budget(
    costs: list[int], budget_cents: int, mode: str, end_order: bool, seed: int
) -> None:
    attrs, s = _setup(mode, budget_cents)
    events = run(task(costs, attrs), s, end_order, seed)
    said = stops(events)
    running = [sum(costs[: i + 1]) for i in range(len(costs))]
    reached = running[-1] >= budget_cents
    if mode in ("root_says_no", "warn_only") or not reached:
        assert said == [], (mode, running, budget_cents)
        return
    [stop] = said
    assert (stop.scope, stop.unit, stop.level, stop.budget) == ("task", "usd", 1.0, budget_cents / 100)
    assert stop.used >= stop.budget - 1e-9
    if not end_order:
        # Start order (the processor): said by the first call whose running total reaches the budget, never before.
        first = next(i for i, total in enumerate(running) if total >= budget_cents)
        assert abs(stop.used - running[first] / 100) < 1e-9, (running, budget_cents, stop.used)
        calls = [e for e in events if isinstance(e, Checkpoint) and e.source == "model_call"]
        at = events.index(stop)
        assert events.index(calls[first]) < at, "said after the call that reached it"
        assert first + 1 == len(calls) or at < events.index(calls[first + 1]), "said before the next call"
    # One decision id per run, whatever path says it: replicas and replays send the same cancel.
    d = budgetstop.decision(stop)
    assert (d.action, d.source, d.run_id, d.task_id) == ("cancel", "budget", stop.task.run_id, stop.task.task_id)
    assert d.comment == budgetstop.reason(stop) and d.comment.startswith("budget reached: $")


def test_a_token_budget_stops_too_and_100_percent_is_said_even_when_the_levels_leave_it_out() -> None:
    attrs = {cv.BUDGET_TOKENS: 40, cv.BUDGET_STOP: "true"}
    events = run(task([1, 1, 1, 1], attrs), settings_(levels=(0.5,)))
    [stop] = stops(events)
    assert (stop.unit, stop.level, stop.used, stop.budget) == ("tokens", 1.0, 45, 40)
    assert budgetstop.reason(stop) == "budget reached: 45 of 40 tokens"
    assert [(e.level, e.stops) for e in events if isinstance(e, BudgetWarning)] == [(0.5, False), (1.0, True)]
    assert budget_line(stop).summary.endswith("it is set to stop the task")


def test_a_stop_asked_after_the_budget_was_passed_stops_at_once_and_once() -> None:
    """The agent's default budget passed before the root (read last, end order) says stop."""
    specs = task([60, 60], {cv.BUDGET_STOP: True})
    events = run(specs, settings_(task_usd={"rivet": 1.0}), end_order=True)
    [stop] = stops(events)
    assert stop.used == 1.2 and stop.budget == 1.0
    ids = [e.event_id for e in events if isinstance(e, BudgetWarning)]
    assert len(ids) == len(set(ids))


def test_junk_stop_values_are_ignored_with_a_note() -> None:
    events = run(task([200], {cv.BUDGET_USD: 1.0, cv.BUDGET_STOP: "maybe"}), settings_())
    assert stops(events) == []
    assert any("agent.budget.stop" in n for e in events for n in e.notes)


def test_the_setting_takes_true_false_or_agent_ids() -> None:
    for raw, want in (("true", {"*"}), ("off", set()), ("", set()), ("claude-code, rivet", {"claude-code", "rivet"})):
        c = Config.load(env={"SPANVISOR_BUDGET_STOP": raw}, extra=())
        assert set(c.get("budget_stop")) == want, raw
        s = TrackerSettings.from_config(c)
        assert s.budgets.stops("rivet") == bool(want), raw
    assert set(Config.load(env={}, extra=()).get("budget_stop")) == set(), "off unless asked for"
