"""The state-fields concern alone (tracking/statefacts.py): a TaskRecord and
a span or checkpoint event in, the fields that win and the events out."""

from __future__ import annotations

from spanvisor.events import Checkpoint, ContextWarning
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.tracking import statefacts
from spanvisor.tracking.record import TaskRecord
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.views import new_view

TRACE = "0" * 31 + "e"
ROOT = "0" * 15 + "3"
T0 = 1_800_000_000 * 10**9
S = 10**9


def _record() -> TaskRecord:
    view = new_view(task_id="t", trace_id=TRACE, root_span_id=ROOT, agent_id="rivet", started_ns=T0, updated_ns=T0)
    return TaskRecord(view, TrackerSettings(), last_ns=T0)


def _root(attrs: dict[str, object]) -> SpanData:
    return SpanData(TRACE, ROOT, None, "task", T0, None, attrs)


def test_a_timed_fact_wins_over_the_roots_default_in_either_order() -> None:
    first = _record()
    statefacts.checkpoint_event(first, ROOT, 1, T0 + S, {cv.STEP: "plan"}, [])
    assert statefacts.attributes(first, _root({cv.STEP: "default"}), None, T0 + 2 * S, []) == []
    second = _record()
    statefacts.attributes(second, _root({cv.STEP: "default"}), None, T0, [])
    statefacts.checkpoint_event(second, ROOT, 1, T0 + S, {cv.STEP: "plan"}, [])
    assert first.working["step"] == second.working["step"] == "plan"


def test_the_later_of_two_timed_facts_wins_whatever_order() -> None:
    rec = _record()
    statefacts.checkpoint_event(rec, ROOT, 1, T0 + 2 * S, {cv.PROGRESS: 0.5}, [])
    (cp,) = statefacts.checkpoint_event(rec, ROOT, 1, T0 + S, {cv.PROGRESS: 0.2}, [])
    assert isinstance(cp, Checkpoint) and cp.changed == () and rec.working["progress"] == 0.5


def test_an_unchanged_attribute_says_nothing_and_a_changed_one_one_checkpoint() -> None:
    rec = _record()
    span = _root({cv.MESSAGE: "reading", "other": 1})
    (cp,) = statefacts.attributes(rec, span, None, T0 + S, [])
    assert isinstance(cp, Checkpoint) and cp.source == "state" and set(cp.changed) == {"message", "status"}
    assert statefacts.attributes(rec, span, None, T0 + 2 * S, []) == []
    assert statefacts.attributes(rec, _root({"other": 2}), None, T0 + 3 * S, []) == []


def test_reported_occupancy_past_a_level_warns_after_its_checkpoint() -> None:
    rec = _record()
    events = statefacts.checkpoint_event(
        rec, ROOT, 1, T0 + S, {cv.CONTEXT_TOKENS: 900, cv.CONTEXT_LIMIT: 1000, "note": "big"}, []
    )
    assert [type(e) for e in events] == [Checkpoint, ContextWarning, ContextWarning]
    cp = events[0]
    # Extras: every key but progress, step, steps, message and status.
    assert isinstance(cp, Checkpoint) and cp.attributes == {
        cv.CONTEXT_TOKENS: 900,
        cv.CONTEXT_LIMIT: 1000,
        "note": "big",
    }
    assert cp.task.status == "context_warning"


def test_a_declared_working_never_hides_the_context_windows_warning() -> None:
    rec = _record()
    statefacts.checkpoint_event(rec, ROOT, 1, T0 + S, {cv.CONTEXT_TOKENS: 900, cv.CONTEXT_LIMIT: 1000}, [])
    statefacts.checkpoint_event(rec, ROOT, 1, T0 + 2 * S, {cv.STATUS: "waiting"}, [])
    assert rec.working["status"] == "waiting"  # a wait outranks the window
    statefacts.checkpoint_event(rec, ROOT, 1, T0 + 3 * S, {cv.STATUS: "working"}, [])
    assert rec.working["status"] == "context_warning"  # back from the wait: as with no status declared
    statefacts.checkpoint_event(rec, ROOT, 1, T0 + S // 2, {cv.STATUS: "waiting"}, [])
    assert rec.working["status"] == "context_warning", "an earlier wait never undoes a later answer"
