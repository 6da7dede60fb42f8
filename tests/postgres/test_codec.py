"""The event codec: lossless JSON round trip for every event type."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.codec import CodecError, event_from_dict, event_to_dict
from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    Checkpoint,
    ContextWarning,
    DiffUpdated,
    TaskCorrected,
    TaskFinished,
    TaskStarted,
    TaskView,
)
from spanvisor.spans.conventions import STATUSES
from tests.core._late import late_call_events

from ._events import task_stream

# Any text, lone surrogates and NULs included: the codec must carry them as-is.
text = st.text(st.characters(codec=None, categories=None), max_size=20)
opt_text = st.none() | text
ints = st.integers(min_value=0, max_value=2**63 - 1)
floats = st.floats(allow_nan=False)
artifacts = st.builds(Artifact, name=text, uri=opt_text, kind=opt_text)
json_leaf = st.none() | st.booleans() | st.integers() | floats | text
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
views = st.builds(
    TaskView,
    task_id=text,
    trace_id=text,
    root_span_id=text,
    agent_id=text,
    agent_name=opt_text,
    task_name=opt_text,
    repo=opt_text,
    status=st.sampled_from(STATUSES),
    progress=st.none() | floats,
    step=opt_text,
    steps=st.lists(text, max_size=4).map(tuple),
    message=opt_text,
    model=opt_text,
    context_tokens=st.none() | ints,
    context_limit=st.none() | ints,
    input_tokens=ints,
    output_tokens=ints,
    artifacts=st.lists(artifacts, max_size=3).map(tuple),
    started_ns=ints,
    updated_ns=ints,
    ended_ns=st.none() | ints,
)
common: dict[str, Any] = dict(event_id=text, time_ns=ints, task=views, notes=st.lists(text, max_size=3).map(tuple))
events = st.one_of(
    st.builds(TaskStarted, **common),
    st.builds(
        Checkpoint,
        **common,
        source=st.sampled_from(["event", "state", "model_call", "span"]),
        changed=st.lists(text, max_size=3).map(tuple),
        attributes=st.dictionaries(text, json_values, max_size=4),
    ),
    st.builds(
        ContextWarning,
        **common,
        level=st.sampled_from(["warning", "critical"]),
        threshold=floats,
        ratio=floats,
        tokens=ints,
        limit=ints,
    ),
    st.builds(ArtifactAdded, **common, artifact=artifacts),
    st.builds(DiffUpdated, **common, diff=text, files=ints, clipped=st.booleans(), digest=text),
    st.builds(
        TaskFinished,
        **common,
        outcome=st.sampled_from(["complete", "error", "cancelled"]),
        duration_s=floats,
        error_type=opt_text,
        error_message=opt_text,
        stacktrace=opt_text,
    ),
    st.builds(
        TaskCorrected,
        **common,
        span_id=text,
        added_input_tokens=ints,
        added_output_tokens=ints,
        added_cost_usd=floats,
        added_unpriced_calls=ints,
        added_artifacts=st.lists(artifacts, max_size=3).map(tuple),
    ),
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_round_trip_through_json_text(event: Any) -> None:
    d = event_to_dict(event)
    wire = json.dumps(d)  # JSON-safe: plain types only
    assert event_from_dict(json.loads(wire)) == event


def test_every_kind_of_a_real_stream_round_trips() -> None:
    for event in task_stream(1, outcome="error"):
        assert event_from_dict(event_to_dict(event)) == event
    corrected = late_call_events(artifact=True)[-1]
    assert isinstance(corrected, TaskCorrected) and corrected.added_artifacts
    assert event_from_dict(json.loads(json.dumps(event_to_dict(corrected)))) == corrected


def test_a_bad_added_artifact_names_the_field() -> None:
    d = event_to_dict(late_call_events(artifact=True)[-1])
    d["added_artifacts"] = [{"uri": "s3://x"}]
    with pytest.raises(CodecError, match=r"added_artifacts\[0\]\.name is missing"):
        event_from_dict(d)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(kind="Nope"), "unknown event kind"),
        (lambda d: d.pop("event_id"), "event_id is missing"),
        (lambda d: d.update(time_ns="soon"), "time_ns has the wrong type"),
        (lambda d: d["task"].update(input_tokens=True), "task.input_tokens"),
        (lambda d: d.update(v=99), "unsupported event codec version"),
        (lambda d: d.update(task=[]), "task must be an object"),
    ],
)
def test_bad_input_names_the_field(mutate: Any, message: str) -> None:
    d = event_to_dict(task_stream(1)[1])
    mutate(d)
    with pytest.raises(CodecError, match=message):
        event_from_dict(d)
