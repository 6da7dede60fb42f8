"""The working fields are TaskView's, one attribute each, and a view built
from them is the view they were read from."""

from __future__ import annotations

import pytest

from spanvisor.events import ApprovalRequest, TaskView
from spanvisor.tracking.views import VIEW_FIELDS, build_view
from spanvisor.tracking.working import WORKING_FIELDS, Working


def _view() -> TaskView:
    return TaskView(
        task_id="t",
        trace_id="a" * 32,
        root_span_id="b" * 16,
        agent_id="agent",
        progress=40,  # an int stays an int: the view shows what was read
        steps=("plan", "do"),
        approvals=(ApprovalRequest("x", "ok?"),),
        cost_usd=0.25,
        seq=3,
    )


def test_the_fields_are_the_views_in_its_order() -> None:
    assert WORKING_FIELDS == VIEW_FIELDS


def test_a_view_round_trips() -> None:
    v = _view()
    w = Working(v)
    built = build_view(w)
    assert built == v
    assert [type(getattr(built, f)) for f in VIEW_FIELDS] == [type(getattr(v, f)) for f in VIEW_FIELDS]


def test_changes_by_name_and_back() -> None:
    v = _view()
    w = Working(v)
    w.apply({"step": "do", "input_tokens": 7})
    assert (w["step"], w.input_tokens) == ("do", 7)
    assert w.as_dict() == {**{f: getattr(v, f) for f in VIEW_FIELDS}, "step": "do", "input_tokens": 7}
    w.load(v)
    assert build_view(w) == v
    with pytest.raises(KeyError):
        w["load"]
    with pytest.raises(AttributeError):
        w.apply({"no_such_field": 1})
