"""A member's stamp written lock-free (``Stamp.direct``): only for members
of an open task made by the root's provider, whose limits were read at the
root.

* A provider whose spans cut values (an attribute value length limit) never
  takes the lock-free write: the stamp goes through the SDK's own write and
  is cut as any value would be.
* Once the root ended, ``direct`` is cleared: a member that starts after it
  is late work, classified as such, and still carries its task's stamp.
* Near the count limit the stamp goes through the SDK's write, which drops
  the oldest keys, never the stamp.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from spanvisor.config import Config
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink


def _stamping(limits: SpanLimits | None = None) -> tuple[SpanvisorSpanProcessor, TracerProvider]:
    config = Config.load(env={}, extra=()).with_values(stamp_spans="on")
    proc = SpanvisorSpanProcessor(sinks=[InMemorySink()], config=config)
    provider = TracerProvider(shutdown_on_exit=False, span_limits=limits)
    provider.add_span_processor(proc)
    return proc, provider


def _root(provider: TracerProvider) -> Any:
    # Values of at most 8 characters: the value-length test's limit cuts none.
    return provider.get_tracer("agent").start_span("rivet", attributes={cv.TASK_NAME: "fix", cv.AGENT_ID: "rivet"})


def test_a_provider_that_cuts_values_stamps_through_the_sdk() -> None:
    proc, provider = _stamping(SpanLimits(max_span_attribute_length=8))
    try:
        root = _root(provider)
        stamp = proc._opened[root.get_span_context().span_id]
        assert stamp.stamped and stamp.direct is None
        member = provider.get_tracer("tools").start_span("tool", context=trace.set_span_in_context(root))
        member.end()
        root.end()
        attrs = dict(member.attributes or {})
        # The root's id (16 hex digits) cut to the provider's 8, as the SDK cuts any value.
        assert attrs[cv.TASK_ROOT] == f"{root.get_span_context().span_id:016x}"[:8]
    finally:
        proc.shutdown()
        provider.shutdown()


def test_a_member_that_starts_after_its_root_ended_is_late_and_still_stamped() -> None:
    proc, provider = _stamping()
    try:
        root = _root(provider)
        root_id = root.get_span_context().span_id
        stamp = proc._opened[root_id]
        assert stamp.direct is not None  # the provider calls spanvisor's processor first
        ctx = trace.set_span_in_context(root)
        root.end()
        assert stamp.ended and stamp.direct is None
        late = provider.get_tracer("tools").start_span("tool", context=ctx, attributes={"k": 1})
        assert proc._opened[late.get_span_context().span_id] is not stamp  # the late twin, not the open task
        late.end()
        attrs = dict(late.attributes or {})
        assert attrs[cv.TASK_ROOT] == f"{root_id:016x}"
        assert attrs[cv.AGENT_ID] == "rivet"
    finally:
        proc.shutdown()
        provider.shutdown()


def test_near_the_count_limit_the_stamp_goes_in_whole() -> None:
    proc, provider = _stamping(SpanLimits(max_span_attributes=4))
    try:
        root = _root(provider)
        member = provider.get_tracer("tools").start_span(
            "tool", context=trace.set_span_in_context(root), attributes={"a": 1, "b": 2}
        )
        member.end()
        root.end()
        attrs = dict(member.attributes or {})
        assert attrs[cv.TASK_ROOT] == f"{root.get_span_context().span_id:016x}"
        assert attrs[cv.AGENT_ID] == "rivet"
        assert len(attrs) <= 4
    finally:
        proc.shutdown()
        provider.shutdown()
