"""Where the stamp's write and the pipeline's copy of a root rely on the
attributes' lock.

* A member's stamp goes into its attribute dict without the lock only when
  the span's provider calls spanvisor's processor first (no other code has
  seen the span yet). A member of another provider, whose first processor is
  someone else's (it may keep the span and read it on another thread), is
  written under the lock, even when its parent is a root of the first kind.
* The pipeline's copy of a live task root (``StartedRoot.attributes``) reads
  the root's keys through the SDK's iteration, which takes the same lock as
  the SDK's drop of the oldest key and its ``dropped += 1``: a copy never
  sees a key gone with the count not yet raised.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanLimits, SpanProcessor, TracerProvider

from spanvisor.config import Config
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.handover import StartedRoot
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until


class _SeenUnderLock:
    """A span's attribute lock that records, per locked section, whether the
    stamp appeared in it (absent on entry, present on exit)."""

    def __init__(self, attrs: Any) -> None:
        self._attrs, self._lock = attrs, threading.Lock()
        self.sections: list[tuple[bool, bool]] = []
        self._before = False

    def __enter__(self) -> None:
        self._lock.acquire()
        self._before = cv.TASK_ROOT in self._attrs._dict

    def __exit__(self, *exc: object) -> None:
        self.sections.append((self._before, cv.TASK_ROOT in self._attrs._dict))
        self._lock.release()

    def acquire(self, *args: Any) -> bool:
        return self._lock.acquire(*args)

    def release(self) -> None:
        self._lock.release()


class _Reader(SpanProcessor):
    """Another processor, first on its provider: it sees each span before
    spanvisor's does (and could hand it to a thread of its own)."""

    def __init__(self) -> None:
        self.locks: list[_SeenUnderLock] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        lock = _SeenUnderLock(span._attributes)
        span._attributes._lock = lock  # type: ignore[union-attr]
        self.locks.append(lock)


def test_a_member_of_another_provider_whose_first_processor_is_not_spanvisors_is_stamped_under_the_lock() -> None:
    config = Config.load(env={}, extra=()).with_values(stamp_spans="on")
    proc = SpanvisorSpanProcessor(sinks=[InMemorySink()], config=config)
    first = TracerProvider(shutdown_on_exit=False)
    first.add_span_processor(proc)  # spanvisor's is the first (and only) processor here
    other = TracerProvider(shutdown_on_exit=False)
    reader = _Reader()
    other.add_span_processor(reader)
    other.add_span_processor(proc)
    try:
        root = first.get_tracer("agent").start_span(
            "invoke_agent rivet", attributes={cv.GEN_AI_OPERATION: "invoke_agent", cv.AGENT_ID: "rivet"}
        )
        ctx = trace.set_span_in_context(root)
        # A member of the root's task, started through the other provider.
        member = other.get_tracer("tools").start_span("tool", context=ctx, attributes={"k": 1})
        member.end()
        root.end()
        attrs = dict(member.attributes or {})
        assert attrs[cv.TASK_ROOT] == f"{root.get_span_context().span_id:016x}"
        assert attrs[cv.AGENT_ID] == "rivet"
        (lock,) = reader.locks
        # The stamp appeared inside a locked section: written under the lock.
        assert (False, True) in lock.sections
    finally:
        proc.shutdown()
        first.shutdown()
        other.shutdown()


def test_a_copy_of_a_live_root_waits_for_the_sdks_drop_and_its_count() -> None:
    """The SDK drops the oldest key (``del``) and raises ``dropped`` in one
    section under the attributes' lock. The pipeline's copy takes the keys
    under that lock too, so one taken "between the two" waits for both: the
    count it reads after says the identity went, and it is put back."""
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=4), shutdown_on_exit=False)
    root = provider.get_tracer("agent").start_span("run", attributes={cv.TASK_NAME: "nightly", cv.AGENT_ID: "rivet"})
    kept = dict(root.attributes or {})
    attrs: Any = root._attributes  # type: ignore[attr-defined]
    inner = attrs._lock
    waiting = threading.Event()

    class _Announcing:
        """The lock, saying when the copy starts waiting on it."""

        def __enter__(self) -> None:
            if threading.current_thread() is copier:
                waiting.set()
            inner.acquire()

        def __exit__(self, *exc: object) -> None:
            inner.release()

    attrs._lock = _Announcing()
    got: dict[str, Any] = {}
    copier = threading.Thread(target=lambda: got.update(StartedRoot(root, kept).attributes))
    with inner:  # the SDK's section, as in its _setitem_locked: the oldest key out ...
        del attrs._dict[cv.TASK_NAME]
        copier.start()
        wait_until(waiting.is_set, timeout=10, what="the copy to wait on the attributes' lock")
        attrs.dropped += 1  # ... and counted, before the lock is released
    copier.join(10)
    assert not copier.is_alive()
    assert got[cv.TASK_NAME] == "nightly" and got[cv.AGENT_ID] == "rivet"
    root.end()


def test_members_that_end_after_the_processor_shut_down_are_not_kept() -> None:
    # An agent may go on using its tracers after its app shut spanvisor down:
    # nothing drains the inbox then, so its spans must not pile up in it.
    config = Config.load(env={}, extra=()).with_values(stamp_spans="on")
    proc = SpanvisorSpanProcessor(sinks=[InMemorySink()], config=config)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(proc)
    tracer = provider.get_tracer("agent")
    try:
        root = tracer.start_span(
            "invoke_agent rivet", attributes={cv.GEN_AI_OPERATION: "invoke_agent", cv.AGENT_ID: "rivet"}
        )
        ctx = trace.set_span_in_context(root)
        proc.shutdown()
        held = len(proc._items)
        for _ in range(200):
            tracer.start_span("tool", context=ctx).end()
        assert len(proc._items) <= held
        root.end()
    finally:
        provider.shutdown()
