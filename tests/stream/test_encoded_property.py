"""The stream's fast encoding of a body is byte-identical to the generic one.

``encoded(event)`` (what the stream sink sends) must equal
``encode(body(event))`` (what the webhook sink and any other reader of the
schema build) for every kind and any field values, junk text included.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.events import (
    ApprovalRequest,
    BudgetWarning,
    ContextForecast,
    Decision,
    DiffUpdated,
    HumanIntervention,
    LogLine,
    ResultField,
    TaskFinished,
    TaskResumed,
    TaskStalled,
    TaskView,
)
from spanvisor.stream.body import body, encode
from spanvisor.stream.encoded import encoded
from tests.core._late import late_call_events
from tests.postgres._events import task_stream
from tests.postgres.test_codec import artifacts, events, floats, ints, json_values, opt_text, text, views

approvals = st.builds(
    ApprovalRequest,
    approval_id=text,
    question=st.text(max_size=600),
    options=st.lists(text, max_size=3).map(tuple),
    digest=text,
)
results = st.builds(ResultField, name=text, value=st.booleans() | st.integers() | floats | text, unit=opt_text)
# The codec test's views, with the fields it leaves at their defaults drawn too.
full_views = st.builds(
    dataclasses.replace,
    views,
    run_id=text,
    cost_usd=floats,
    unpriced_calls=ints,
    budget_usd=st.none() | floats,
    budget_tokens=st.none() | ints,
    stalled=st.booleans(),
    cancel_requested=st.booleans(),
    approvals=st.lists(approvals, max_size=2).map(tuple),
    results=st.lists(results, max_size=3).map(tuple),
    artifacts=st.lists(artifacts, max_size=2).map(tuple),
    seq=ints,
    progress=st.none() | floats | st.integers(0, 100),
    started_ns=st.just(0) | ints,
)
common: dict[str, Any] = dict(event_id=text, time_ns=ints, task=full_views, notes=st.lists(text, max_size=3).map(tuple))
decisions = st.builds(
    Decision,
    intervention_id=text,
    task_id=text,
    action=st.sampled_from(["approve", "reject", "cancel", "retry", "acknowledge"]),
    actor_id=text,
    time_ns=ints,
    comment=opt_text,
)
more_events = st.one_of(
    st.builds(TaskStalled, **common, idle_s=floats),
    st.builds(TaskResumed, **common, idle_s=floats),
    st.builds(
        ContextForecast,
        **common,
        threshold=floats,
        ratio=floats,
        tokens=ints,
        limit=ints,
        calls=ints,
        eta_s=st.none() | floats,
    ),
    st.builds(
        BudgetWarning,
        **common,
        scope=st.sampled_from(["task", "agent_day", "day", "month"]),
        unit=st.sampled_from(["usd", "tokens"]),
        level=floats,
        used=floats,
        budget=floats,
        subject=text,
    ),
    st.builds(
        TaskFinished,
        **common,
        outcome=st.sampled_from(["complete", "error", "cancelled"]),
        duration_s=floats,
        outliers=st.lists(text, max_size=2).map(tuple),
        log_tail=st.lists(st.builds(LogLine, time_ns=ints, level=text, message=text, logger=opt_text), max_size=2).map(
            tuple
        ),
    ),
    st.builds(HumanIntervention, **common, decision=decisions, reason=opt_text, request=st.none() | approvals),
    st.builds(DiffUpdated, **common, diff=text, files=ints, clipped=st.booleans(), digest=text),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(events, more_events), full_views)
def test_the_stream_sends_the_generic_body_byte_for_byte(event: Any, view: Any) -> None:
    assert encoded(event) == encode(body(event))
    # The same event with a view that sets every field the body shows.
    moved = dataclasses.replace(event, task=view)
    assert encoded(moved) == encode(body(moved))


@settings(max_examples=50, deadline=None)
@given(st.lists(text, min_size=1, max_size=3), json_values)
def test_checkpoint_attributes_of_any_json_shape(names: list[str], value: Any) -> None:
    event = task_stream(1)[1]
    moved = dataclasses.replace(event, attributes=dict.fromkeys(names, value))
    assert encoded(moved) == encode(body(moved))


def test_a_diff_is_sent_by_its_size_not_its_text() -> None:
    event = task_stream(1)[1]
    diff = DiffUpdated(
        event_id="d", time_ns=1, task=event.task, diff="+x\n" * 1000, files=1, clipped=False, digest="ab"
    )
    sent = json.loads(encoded(diff))
    assert (sent["type"], sent["chars"], sent["files"], sent["digest"]) == ("spanvisor.diff_updated", 3000, 1, "ab")
    assert "diff" not in sent


def test_a_real_task_stream_and_a_late_span_encode_alike() -> None:
    stream = [*task_stream(1, outcome="error"), *task_stream(2), *late_call_events(artifact=True)]
    assert {type(e).__name__ for e in stream} >= {"TaskStarted", "Checkpoint", "TaskFinished", "TaskCorrected"}
    for event in stream:
        assert encoded(event) == encode(body(event))


class _Label(str):
    """A str subclass: the C encoder writes it as a string, a fast path must too."""


class _Thing:
    def __str__(self) -> str:
        return "a thing"


# Values of any type in any field the body shows: the view's types are not
# enforced, and the member-by-member writer must fall back exactly as the
# encoder of the whole dict does (NaN and infinities, -0.0, bools where ints
# go, str and int subclasses, an object only str() can write).
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    text,
    text.map(_Label),
    st.just(_Thing()),
    st.lists(text, max_size=2).map(tuple),
)
view_fields = st.sampled_from([f.name for f in dataclasses.fields(TaskView) if f.name not in ("decisions",)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(view_fields, odd_values), max_size=6))
def test_any_value_in_any_view_field_encodes_alike(changes: list[tuple[str, Any]]) -> None:
    event = task_stream(1)[1]
    moved = dataclasses.replace(event, task=dataclasses.replace(event.task, **dict(changes)))
    try:
        expected = encode(body(moved))
    except Exception as exc:  # a wrong type where a tuple goes, a time the datetime cannot hold
        with pytest.raises(type(exc)):
            encoded(moved)
        return
    assert encoded(moved) == expected


def test_an_attribute_that_refers_to_itself_raises_as_before() -> None:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    event = dataclasses.replace(task_stream(1)[1], attributes=looped)
    with pytest.raises(ValueError, match="Circular reference"):
        encode(body(event))
    with pytest.raises(ValueError, match="Circular reference"):
        encoded(event)
