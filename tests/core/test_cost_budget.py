"""Cost, budgets and context forecasts, on the tracker's paths."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.budgets.ledger import BudgetSettings
from spanvisor.config import Config
from spanvisor.events import BudgetWarning, Checkpoint, ContextForecast, ContextWarning, Event, TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.tracking.prices import Pricer
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

from ._invariants import check_stream
from ._trees import FakeClock, SpanSpec, feed_end_order, feed_start_order, stamp_trees

TRACE = "0" * 31 + "c"
ROOT = "00000000000000c0"
NOV_22 = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp() * 1e9)
SONNET = "claude-sonnet-4-20250514"


def _task(
    calls: list[tuple[int, int]],
    *,
    model: str = SONNET,
    root_attrs: dict[str, object] | None = None,
    call_attrs: dict[str, object] | None = None,
    start: int = NOV_22,
    gap: int = 1_000_000_000,
    trace: str = TRACE,
    root: str = ROOT,
) -> list[SpanSpec]:
    r = SpanSpec(trace, root, None, "task", start, start + gap * (len(calls) + 2))
    r.start_attrs = {cv.TASK_NAME: "priced", cv.AGENT_ID: "rivet", **(root_attrs or {})}
    specs = [r]
    for i, (t_in, t_out) in enumerate(calls):
        begin = start + gap * (i + 1)
        c = SpanSpec(trace, f"{root[:12]}{i + 1:04x}", root, "chat", begin, begin + gap // 2)
        c.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: model, **(call_attrs or {})}
        c.updates = [(begin + gap // 2, {cv.GEN_AI_INPUT: t_in, cv.GEN_AI_OUTPUT: t_out})]
        specs.append(c)
    stamp_trees(specs)
    return specs


def _run(
    specs: list[SpanSpec], tracker_settings: TrackerSettings | None = None, end_order: bool = False
) -> list[Event]:
    s = tracker_settings or TrackerSettings()
    if end_order:
        clock = FakeClock()
        events = feed_end_order(TaskTracker(s, clock=clock), specs, random.Random(3), True, clock, 3)
    else:
        events = feed_start_order(TaskTracker(s), specs)
    check_stream(events, all_finished=True)
    return events


def _calls(events: list[Event]) -> list[Checkpoint]:
    return [e for e in events if isinstance(e, Checkpoint) and e.source == "model_call"]


# -- prices -------------------------------------------------------------------------


def test_known_models_cost_exactly_what_genai_prices_says_at_the_calls_time() -> None:
    events = _run(_task([(120_000, 3_000), (150_000, 2_000)]))
    want = Decimal(0)
    for call, (t_in, t_out) in zip(_calls(events), [(120_000, 3_000), (150_000, 2_000)], strict=True):
        when = datetime.fromtimestamp(call.time_ns / 1e9, UTC)
        price = calc_price(
            Usage(input_tokens=t_in, output_tokens=t_out), model_ref=SONNET, genai_request_timestamp=when
        )
        assert call.attributes["cost_usd"] == float(price.total_price)
        assert call.attributes["cost_source"] == "genai-prices"
        want += price.total_price
    done = events[-1]
    assert isinstance(done, TaskFinished)
    assert done.task.cost_usd == pytest.approx(float(want), abs=1e-9) and done.task.unpriced_calls == 0


def test_cached_input_is_priced_apart() -> None:
    plain = _run(_task([(100_000, 1_000)]))[-1].task.cost_usd
    cached = _run(_task([(100_000, 1_000)], call_attrs={cv.GEN_AI_CACHE_READ: 90_000}))[-1].task.cost_usd
    assert 0 < cached < plain


def test_an_unknown_model_is_unpriced_and_counted_never_guessed() -> None:
    events = _run(_task([(1_000, 10), (2_000, 20)], model="acme-llm-7"))
    done = events[-1].task
    assert (done.cost_usd, done.unpriced_calls) == (0.0, 2)
    assert {c.attributes["cost_source"] for c in _calls(events)} == {"unpriced"}


def test_a_cost_the_instrumentation_reports_wins_and_operators_prices_beat_the_database() -> None:
    reported = _run(_task([(1_000, 10)], call_attrs={cv.OI_COST: 0.42}))
    assert _calls(reported)[0].attributes == {
        **_calls(reported)[0].attributes,
        "cost_usd": 0.42,
        "cost_source": "reported",
    }
    config = Config.load(env={"SPANVISOR_MODEL_PRICES": "claude-sonnet=1:2"})
    priced = _run(_task([(1_000_000, 500_000)]), TrackerSettings.from_config(config))
    assert priced[-1].task.cost_usd == pytest.approx(1.0 + 1.0)


def test_pricer_survives_junk() -> None:
    p = Pricer()
    assert p.price({cv.OI_COST: float("nan")}, None, 1, 1, 0).source == "unpriced"
    assert p.price({cv.OI_COST: -3}, "nope-model", 1, 1, 0).usd is None


# -- budgets ------------------------------------------------------------------------


def _budget_events(events: list[Event]) -> list[tuple[str, str, float]]:
    return [(e.scope, e.unit, e.level) for e in events if isinstance(e, BudgetWarning)]


def test_a_task_budget_on_the_root_warns_at_80_and_100_percent_once() -> None:
    specs = _task([(100_000, 1_000)] * 6, root_attrs={cv.BUDGET_USD: 1.0, cv.BUDGET_TOKENS: 400_000})
    for end_order in (False, True):
        events = _run(specs, end_order=end_order)
        got = _budget_events(events)
        assert got.count(("task", "usd", 0.8)) == 1 and got.count(("task", "usd", 1.0)) == 1, got
        assert got.count(("task", "tokens", 0.8)) == 1 and got.count(("task", "tokens", 1.0)) == 1, got
        assert events[-1].task.budget_usd == 1.0 and events[-1].task.budget_tokens == 400_000


def _budgets(**kw: object) -> TrackerSettings:
    return TrackerSettings(budgets=BudgetSettings(**kw))  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(st.tuples(st.integers(0, 300_000), st.integers(0, 20_000)), min_size=1, max_size=12),
    end_order=st.booleans(),
)
def test_each_budget_level_fires_once_per_scope_and_in_order(calls: list[tuple[int, int]], end_order: bool) -> None:
    s = _budgets(agent_day_usd={"*": 2.0}, day_usd=3.0, month_usd=4.0, task_usd={"rivet": 1.5})
    events = _run(_task(calls), s, end_order=end_order)
    got = [e for e in events if isinstance(e, BudgetWarning)]
    keys = [(e.scope, e.unit, e.subject, e.level) for e in got]
    assert len(keys) == len(set(keys)), keys
    total = events[-1].task.cost_usd
    for scope, budget in (("task", 1.5), ("agent_day", 2.0), ("day", 3.0), ("month", 4.0)):
        levels = [e.level for e in got if e.scope == scope]
        assert levels == sorted(levels)
        assert levels == [lv for lv in (0.8, 1.0) if total >= lv * budget - 1e-9], (scope, total, levels)
        for e in got:
            if e.scope == scope:
                assert e.used >= e.level * budget - 1e-9


def test_the_day_rolls_over_for_agent_and_day_budgets() -> None:
    s = _budgets(agent_day_usd={"rivet": 0.5}, day_usd=0.5)
    late = int(datetime(2026, 11, 22, 23, 59, tzinfo=UTC).timestamp() * 1e9)
    first = _task([(200_000, 1_000)] * 2, start=late - 10 * 10**9, gap=3 * 10**9)
    second = _task([(200_000, 1_000)] * 2, start=late + 2 * 60 * 10**9, gap=3 * 10**9, trace="0" * 31 + "d")
    tracker = TaskTracker(s)
    events = feed_start_order(tracker, first) + feed_start_order(tracker, second)
    got = sorted({(e.scope, e.subject, e.level) for e in events if isinstance(e, BudgetWarning)})
    assert got == [
        ("agent_day", "rivet:2026-11-22", 0.8),
        ("agent_day", "rivet:2026-11-22", 1.0),
        ("agent_day", "rivet:2026-11-23", 0.8),
        ("agent_day", "rivet:2026-11-23", 1.0),
        ("day", "2026-11-22", 0.8),
        ("day", "2026-11-22", 1.0),
        ("day", "2026-11-23", 0.8),
        ("day", "2026-11-23", 1.0),
    ]


def test_budget_lines_say_what_and_how_much() -> None:
    from spanvisor.display.thread import budget_line

    events = _run(_task([(200_000, 1_000)] * 2), _budgets(agent_day_usd={"*": 0.5}))
    lines = [budget_line(e).summary for e in events if isinstance(e, BudgetWarning)]
    assert lines == [
        "80% of rivet's budget for 2026-11-22 used: $0.615 of $0.50",
        "100% of rivet's budget for 2026-11-22 used: $0.615 of $0.50",
    ]


# -- forecasts ----------------------------------------------------------------------

LIMIT = 200_000  # claude-sonnet-4's window


def _occupancy(series: list[int]) -> list[Event]:
    return _run(_task([(t, 0) for t in series]))


@pytest.mark.parametrize(
    ("name", "series", "forecast"),
    [
        ("linear rise", [40_000, 60_000, 80_000, 100_000, 120_000], True),
        ("flat", [100_000] * 6, False),
        ("falling", [130_000, 120_000, 110_000, 100_000], False),
        ("noisy", [90_000, 110_000, 95_000, 115_000, 100_000, 125_000], False),
        ("one huge jump", [20_000, 20_000, 20_000, 135_000], False),
        ("two calls only", [100_000, 130_000], False),
    ],
)
def test_forecasts_only_where_the_trend_says_so(name: str, series: list[int], forecast: bool) -> None:
    events = _occupancy(series)
    forecasts = [e for e in events if isinstance(e, ContextForecast)]
    assert bool(forecasts) == forecast, (name, [(e.threshold, e.calls) for e in forecasts])
    for f in forecasts:
        crossed = [e for e in events if isinstance(e, ContextWarning) and e.threshold == f.threshold]
        # Said before the crossing, never after it.
        assert all(f.task.seq < c.task.seq for c in crossed)
        assert f.ratio < f.threshold and 1 <= f.calls <= 3 and f.eta_s is not None


def test_a_forecast_is_said_once_per_level_until_it_re_arms() -> None:
    series = [40_000, 60_000, 80_000, 100_000, 120_000, 140_000, 160_000, 20_000, 40_000, 60_000, 80_000, 100_000]
    events = _occupancy(series)
    f70 = [e for e in events if isinstance(e, ContextForecast) and e.threshold == 0.70]
    assert len(f70) == 2  # once before the first crossing, once again after compaction re-armed the level


# -- outliers -----------------------------------------------------------------------


def test_a_task_far_above_its_agents_usual_says_so_in_the_summary() -> None:
    from spanvisor.budgets.outliers import MIN_HISTORY
    from spanvisor.display.task import summary_text

    tracker = TaskTracker()
    events: list[Event] = []
    for i in range(MIN_HISTORY + 1):
        tokens = 10_000 + (i % 5) * 100 if i < MIN_HISTORY else 40_000
        specs = _task([(tokens, 0)], trace=f"{0xE00 + i:032x}", start=NOV_22 + i * 10**10)
        events += feed_start_order(tracker, specs)
    done = [e for e in events if isinstance(e, TaskFinished)]
    assert all(not d.outliers for d in done[:-1])
    last = done[-1]
    assert any(o.endswith("this agent's usual tokens") and o.startswith("3.9x") for o in last.outliers), last.outliers
    assert "this agent's usual tokens" in summary_text(last)


# -- stalls -------------------------------------------------------------------------


def test_a_quiet_task_stalls_once_and_resumes_with_a_line_each() -> None:
    from spanvisor.display.thread import ThreadPolicy
    from spanvisor.events import TaskResumed, TaskStalled
    from spanvisor.tracking.stalls import StallSettings

    clock = FakeClock()
    s = TrackerSettings(stalls=StallSettings(after_s=600, by_agent={"fast": 60}))
    tracker = TaskTracker(s, clock=clock)
    root, call = _task([(1_000, 10)])
    events = tracker.span_started(root.data(root.start_ns, stamped=True), live=root)
    clock.advance(599)
    assert tracker.expire() == []
    clock.advance(2)
    (stalled,) = tracker.expire()
    assert isinstance(stalled, TaskStalled) and stalled.task.stalled and stalled.idle_s >= 600
    clock.advance(3600)
    assert tracker.expire() == []  # said once, not every second
    resumed = tracker.span_ended(call.data(None, stamped=True))
    assert isinstance(resumed[0], TaskResumed) and not resumed[0].task.stalled
    done = tracker.span_ended(root.data(None, stamped=True))
    events += [stalled, *resumed, *done]
    check_stream(events, all_finished=True)
    clock.advance(10_000)
    assert tracker.expire() == []  # a finished task never stalls
    lines = [line.summary for e in events for line in ThreadPolicy().lines(e)]
    assert any(line.startswith("No activity for 10m") for line in lines), lines
    assert any(line.startswith("Activity again after") for line in lines), lines


# -- the agent reads its budget -----------------------------------------------------


def test_the_agent_reads_its_budget_and_may_stop(agent: Any) -> None:
    from spanvisor.agent import OverBudget, task

    with task("bounded", agent_id="rivet", tracer=agent.tracer, **{cv.BUDGET_USD: 0.5}) as t:
        assert t.budget is None  # nothing counted yet
        for _ in range(2):
            with agent.tracer.start_as_current_span("chat", attributes={cv.GEN_AI_OPERATION: "chat"}) as call:
                call.set_attributes({cv.GEN_AI_REQUEST_MODEL: SONNET, cv.GEN_AI_INPUT: 100_000, cv.GEN_AI_OUTPUT: 0})
        assert agent.flush()
        state = t.budget
        assert state is not None and state.budget_usd == 0.5 and state.used_usd == pytest.approx(0.6)
        with pytest.raises(OverBudget, match=r"over budget: \$0\.6000 of \$0\.50"):
            t.raise_if_over_budget()
    assert agent.flush()
    assert t.budget is None  # the task ended: nothing left to read


def test_checkpoints_on_the_open_root_keep_a_task_from_stalling() -> None:
    """Found by review: polls of the root did not count as activity."""
    from spanvisor.events import TaskStalled
    from spanvisor.spans.data import SpanEventData

    clock = FakeClock()
    tracker = TaskTracker(clock=clock)
    (root, _call) = _task([(1_000, 10)])
    tracker.span_started(root.data(root.start_ns, stamped=True), live=root)
    events: list[Event] = []
    for i in range(1, 6):  # a checkpoint every 5 minutes for 25 minutes
        clock.advance(300)
        t = root.start_ns + i
        root.events.append(SpanEventData(cv.EVENT_CHECKPOINT, t, {cv.PROGRESS: 10 * i}))
        events += tracker.poll(lambda live, t=t: live.data(t, stamped=True), now_ns=t)
        events += tracker.expire()
    assert not [e for e in events if isinstance(e, TaskStalled)]
    assert [e.task.progress for e in events] == [10, 20, 30, 40, 50]


def test_the_pipeline_hands_cost_budget_and_stall_settings_to_the_tracker() -> None:
    """Found by review: these settings were parsed but never reached the tracker."""
    from spanvisor.pipeline.pipeline import Pipeline
    from spanvisor.testing import InMemorySink

    config = Config.load(
        env={
            "SPANVISOR_STALL_AFTER": "0",
            "SPANVISOR_MODEL_PRICES": "my-finetune=3:15",
            "SPANVISOR_BUDGET_DAY_USD": "5",
        }
    )
    settings = Pipeline(config, [InMemorySink()]).tracker.settings
    assert settings.stalls.after_s == 0
    assert settings.budgets.day_usd == 5.0
    assert settings.pricer.price({}, "my-finetune-v2", 1_000_000, 0, 0).usd == 3.0
