"""The model-call concern alone (tracking/calls.py): a TaskRecord and one
ended span in, the events and the call's price out; no tracker, no TaskState."""

from __future__ import annotations

from typing import Any

from spanvisor.events import Checkpoint, ContextForecast, ContextWarning
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.spans.windows import ContextWindows
from spanvisor.tracking import calls
from spanvisor.tracking.prices import Pricer
from spanvisor.tracking.record import TaskRecord
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.views import new_view

TRACE = "0" * 31 + "a"
ROOT = "0" * 15 + "1"
T0 = 1_800_000_000 * 10**9
S = 10**9


def _record(**settings: Any) -> TaskRecord:
    s = TrackerSettings(
        pricer=Pricer({"test-model": (3.0, 15.0, None)}), windows=ContextWindows({"test-model": 1000}), **settings
    )
    view = new_view(task_id="t", trace_id=TRACE, root_span_id=ROOT, agent_id="rivet", started_ns=T0, updated_ns=T0)
    return TaskRecord(view, s, last_ns=T0)


def _call(n: int, t_in: int | None, t_out: int | None, model: str = "test-model", **extra: Any) -> SpanData:
    a: dict[str, Any] = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: model, **extra}
    if t_in is not None:
        a[cv.GEN_AI_INPUT] = t_in
    if t_out is not None:
        a[cv.GEN_AI_OUTPUT] = t_out
    start = T0 + n * S
    return SpanData(TRACE, f"{n + 2:016x}", ROOT, "chat", start, start + S // 2, a)


def test_a_call_with_usage_gives_its_checkpoint_and_price() -> None:
    rec = _record()
    events, usd = calls.model_call(rec, _call(1, 100, 20), [])
    assert usd is not None and abs(usd - (100 * 3.0 + 20 * 15.0) / 1e6) < 1e-12
    assert len(events) == 1
    cp = events[0]
    assert isinstance(cp, Checkpoint) and cp.source == "model_call" and cp.changed == ("tokens",)
    assert cp.attributes == {
        "model": "test-model",
        "operation": "chat",
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": usd,
        "cost_source": "configured",
    }
    v = cp.task
    assert (v.input_tokens, v.output_tokens, v.context_tokens, v.context_limit) == (100, 20, 120, 1000)
    assert v.seq == 1 and cp.time_ns == T0 + S + S // 2 == rec.last_ns
    assert rec.cost_nano == round(usd * 1e9)


def test_a_call_without_usage_changes_nothing() -> None:
    rec = _record()
    before = rec.view
    assert calls.model_call(rec, _call(1, None, None), []) == ([], None)
    assert rec.view == before and rec.cost_nano == 0


def test_an_unknown_model_is_unpriced_and_counted() -> None:
    rec = _record()
    events, usd = calls.model_call(rec, _call(1, 10, 1, model="no-such-model-anywhere"), [])
    assert usd is None
    cp = events[0]
    assert isinstance(cp, Checkpoint) and cp.task.unpriced_calls == 1
    assert cp.attributes["cost_source"] == "unpriced"


def test_crossing_a_level_warns_once_and_rearms_below_it() -> None:
    rec = _record(thresholds=(0.5, 0.9))
    events, _ = calls.model_call(rec, _call(1, 550, 0), [])
    warnings = [e for e in events if isinstance(e, ContextWarning)]
    assert [(w.threshold, w.level) for w in warnings] == [(0.5, "warning")]
    # Still above the level: not said again.
    events, _ = calls.model_call(rec, _call(2, 600, 0), [])
    assert not [e for e in events if isinstance(e, ContextWarning)]
    # The next level: the top one, critical; events in time order, seq by one.
    events, _ = calls.model_call(rec, _call(3, 950, 0), [])
    said = [(e.threshold, e.level) for e in events if isinstance(e, ContextWarning)]
    assert said == [(0.9, "critical")]
    assert [e.time_ns for e in events] == sorted(e.time_ns for e in events)
    assert [e.task.seq for e in events] == list(range(events[0].task.seq, events[0].task.seq + len(events)))


def test_a_steady_climb_is_forecast_before_the_level() -> None:
    rec = _record(thresholds=(0.9,))
    found: list[ContextForecast] = []
    for n in range(1, 8):
        events, _ = calls.model_call(rec, _call(n, 100 * n, 0), [])
        found += [e for e in events if isinstance(e, ContextForecast)]
    assert len(found) == 1  # said once per level
    f = found[0]
    assert f.threshold == 0.9 and f.limit == 1000 and 0 < f.calls <= 5 and f.tokens < 900


def test_a_tool_call_changes_no_field() -> None:
    rec = _record()
    before = rec.working.as_dict()
    span = SpanData(TRACE, "9" * 16, ROOT, "search", T0, T0 + 2 * S, {cv.GEN_AI_TOOL_NAME: "search"}, error=True)
    (cp,) = calls.tool_call(rec, span, [])
    assert isinstance(cp, Checkpoint) and cp.source == "tool_call"
    assert cp.attributes == {"tool": "search", "duration_s": 2.0, "error": "error"}
    after = rec.working.as_dict()
    assert {k for k in after if after[k] != before[k]} == {"seq", "updated_ns"}
