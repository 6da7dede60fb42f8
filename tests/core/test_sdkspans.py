"""pipeline/sdkspans reads SDK spans through their containers: the result
must be what ``from_sdk`` (the public properties) gives, live or ended, as a
root's events grow, past the SDK's event limit, and with times out of range."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.trace import Status, StatusCode

from spanvisor.pipeline.handover import compact_end
from spanvisor.pipeline.sdkspans import light_span, snapshot_live
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import MAX_AHEAD_NS, SpanData, from_sdk


class Ends(SpanProcessor):
    """Keeps the ReadableSpan the SDK hands every processor at a span's end."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def _provider(limits: SpanLimits | None = None) -> tuple[Any, Ends]:
    ends = Ends()
    p = TracerProvider(resource=Resource.create({"service.name": "svc"}), span_limits=limits, shutdown_on_exit=False)
    p.add_span_processor(ends)
    return p.get_tracer("t"), ends


def test_a_live_root_read_again_and_again_equals_from_sdk() -> None:
    tracer, _ = _provider()
    root = tracer.start_span("root", attributes={cv.AGENT_ID: "a", "agent.steps": ["x", "y"], "n": 1})
    assert snapshot_live(root) == from_sdk(root, resource_attrs={})
    first = None
    for i in range(6):
        root.add_event("agent.checkpoint", {"message": f"m{i}", "agent.step": "x"})
        root.set_attribute("agent.progress", i * 10)
        snap = snapshot_live(root)
        assert snap == from_sdk(root, resource_attrs={})
        assert snap is not None and len(snap.events) == i + 1
        first = first or snap.events[0]
        assert snap.events[0] is first  # converted once, however often read
    root.end()
    assert snapshot_live(root) == from_sdk(root, resource_attrs={})


def test_events_past_the_sdks_limit_are_read_as_the_sdk_keeps_them() -> None:
    tracer, _ = _provider(SpanLimits(max_events=3))
    root = tracer.start_span("root")
    for i in range(7):
        root.add_event(f"e{i}", {"i": i})
        snap = snapshot_live(root)
        assert snap == from_sdk(root, resource_attrs={})
        assert snap is not None and [e.name for e in snap.events][-1] == f"e{i}"


def test_an_event_time_out_of_range_is_clamped_to_now_on_every_read() -> None:
    tracer, _ = _provider()
    root = tracer.start_span("root")
    root.add_event("ok", {})
    far = time.time_ns() + 2 * MAX_AHEAD_NS
    root.add_event("ahead", {}, timestamp=far)
    before = time.time_ns()
    first = snapshot_live(root)
    assert first is not None
    assert before <= first.events[1].time_ns <= time.time_ns()
    time.sleep(0.001)
    second = snapshot_live(root)
    assert second is not None
    assert second.events[1].time_ns > first.events[1].time_ns  # read again, not kept
    assert second.events[0] == first.events[0]


def test_a_span_time_out_of_range_goes_through_from_sdk() -> None:
    tracer, _ = _provider()
    far = time.time_ns() + 2 * MAX_AHEAD_NS
    span = tracer.start_span("s", start_time=far)
    snap = snapshot_live(span)
    assert snap is not None and snap.notes  # from_sdk's note on the clamped start


def _ended(tracer: Any, ends: Ends, name: str, attrs: dict[str, Any], error: bool = False) -> ReadableSpan:
    with tracer.start_as_current_span(name, attributes=attrs, record_exception=False, set_status_on_exception=False):
        pass
    span = ends.ended[-1]
    if error:
        span._status = Status(StatusCode.ERROR, "boom")
    return span


def test_light_span_keeps_the_stamps_of_a_span_without_content() -> None:
    tracer, ends = _provider()
    stamps = {cv.TASK_ROOT: "00000000000000aa", cv.TASK_ID: "t-1", cv.AGENT_ID: "a"}
    span = _ended(tracer, ends, "tool", {"http.method": "GET", **stamps}, error=True)
    got = light_span(span)
    full = from_sdk(span)
    assert got.attributes == stamps
    assert (got.trace_id, got.span_id, got.parent_id, got.name) == (full.trace_id, full.span_id, None, "tool")
    assert (got.start_ns, got.end_ns, got.error, got.status_message) == (full.start_ns, full.end_ns, True, "boom")
    assert dict(got.resource) == full.resource


def test_light_span_of_a_span_with_content_equals_from_sdk() -> None:
    tracer, ends = _provider()
    call = _ended(
        tracer,
        ends,
        "chat",
        {cv.GEN_AI_OPERATION: "chat", "gen_ai.usage.input_tokens": 10, cv.TASK_ROOT: "00000000000000aa"},
    )
    assert light_span(call) == from_sdk(call)
    with tracer.start_as_current_span("with event") as s:
        s.add_event("agent.checkpoint", {"message": "hi"})
    assert light_span(ends.ended[-1]) == from_sdk(ends.ended[-1])
    results = _ended(tracer, ends, "root", {cv.RESULT_PREFIX + "rows": 3})
    got = light_span(results)
    assert got == from_sdk(results)
    assert isinstance(got, SpanData)


def test_every_change_to_a_root_shows_in_the_next_read() -> None:
    tracer, _ = _provider()
    root = tracer.start_span("root", attributes={cv.AGENT_ID: "a"})
    root.add_event("agent.checkpoint", {"message": "one"})
    first = snapshot_live(root)
    assert first is not None and snapshot_live(root) == first
    root.set_attribute("agent.progress", 50)
    second = snapshot_live(root)
    assert second != first and second == from_sdk(root, resource_attrs={})
    assert first.attributes == {cv.AGENT_ID: "a"}  # the earlier read is unchanged
    root.set_status(Status(StatusCode.ERROR, "bad"))
    third = snapshot_live(root)
    assert third != second and third == from_sdk(root, resource_attrs={})
    root.update_name("renamed")
    assert snapshot_live(root) == from_sdk(root, resource_attrs={})
    root.end()
    ended = snapshot_live(root)
    assert ended is not None and ended.end_ns is not None
    assert ended == from_sdk(root, resource_attrs={})


class Starts(SpanProcessor):
    """Keeps each span the SDK starts, with its parent's context."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span)


def test_a_compact_end_reads_as_the_span_it_came_from() -> None:
    tracer, ends = _provider()
    stamps = {cv.TASK_ROOT: "00000000000000aa", cv.TASK_ID: "t-1"}
    with tracer.start_as_current_span("parent"):
        plain = _ended(tracer, ends, "tool", {"http.method": "GET", **stamps}, error=True)
        call = _ended(tracer, ends, "chat", {cv.GEN_AI_OPERATION: "chat", "gen_ai.usage.input_tokens": 5, **stamps})
        with tracer.start_as_current_span("failing", attributes=stamps) as s:
            s.add_event("exception", {"exception.type": "ValueError", "exception.message": "no"})
        failing = ends.ended[-1]
    for span in (plain, call, failing):
        compact = compact_end(span)
        assert type(compact) is tuple
        assert light_span(compact) == light_span(span)
    assert light_span(compact_end(call)) == from_sdk(call)


def test_a_span_of_another_shape_is_handed_over_as_it_is() -> None:
    class Other:
        name = "other"

    other = Other()
    assert compact_end(other) is other


def test_each_providers_spans_carry_its_own_resource_read_once() -> None:
    """The resource's attributes are copied once for a provider's spans, and
    spans of two providers in turn each carry their own."""
    made = []
    for name in ("svc-a", "svc-b"):
        ends = Ends()
        p = TracerProvider(resource=Resource.create({"service.name": name}), shutdown_on_exit=False)
        p.add_span_processor(ends)
        made.append((p.get_tracer("t"), ends))
    content = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3}
    spans = [_ended(tracer, ends, f"chat {n}", dict(content)) for n in range(2) for tracer, ends in made]
    got = [light_span(s) for s in spans]
    assert [g.resource["service.name"] for g in got] == ["svc-a", "svc-b"] * 2
    assert got == [from_sdk(s) for s in spans]
    assert got[0].resource is not got[1].resource
    again = light_span(spans[1])
    assert again.resource is light_span(spans[3]).resource  # the same provider's, once


def test_an_ended_spans_events_are_not_kept_for_a_next_read() -> None:
    """The converted events are kept for an open root (read at every poll),
    never for a span that ended: it is read once."""
    from spanvisor.pipeline import sdkspans

    tracer, ends = _provider()
    with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}) as live:
        live.add_event("gen_ai.choice", {"index": 0})
        assert snapshot_live(live) == from_sdk(live, resource_attrs={})
        assert live in sdkspans._converted
    call = ends.ended[-1]
    with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}) as other:
        other.add_event("gen_ai.choice", {"index": 0})
    ended = ends.ended[-1]
    assert light_span(call) == from_sdk(call) and light_span(ended) == from_sdk(ended)
    assert ended not in sdkspans._converted
