"""A pump's slice with spans handed over bare: those of no task replay to
nothing, so the drain itself watches the slice's end, and counts them.

A run of them used to be taken whole by one pump (nothing came out for the
pump to stop on) and left out of the tracked spans' count."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.inbox import CHECK_EVERY, Inbox
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.spans import conventions as cv
from spanvisor.stats import PipelineStats

from ._sdk import _config


class _Idle(Pipeline):
    """A pipeline whose thread never starts: the test pumps it."""

    def start(self) -> _Idle:
        return self


def _plain_spans(pipeline: Pipeline, n: int) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
    tracer = provider.get_tracer("t")
    for _ in range(n):
        with tracer.start_as_current_span("plain"):
            pass
    return provider


def test_a_drain_past_its_deadline_stops_on_items_that_replay_to_nothing() -> None:
    inbox = Inbox(1000, PipelineStats())
    inbox.replay = lambda item: None
    for i in range(200):
        inbox._items.append(i)
    assert list(inbox.drain(lambda: True, until=time.monotonic() - 1.0)) == []
    assert inbox.stopped and inbox.skipped == CHECK_EVERY - 1
    assert len(inbox) == 200 - (CHECK_EVERY - 1)
    assert list(inbox.drain(lambda: True)) == []  # no deadline: everything
    assert not inbox.stopped and inbox.skipped == 200 - (CHECK_EVERY - 1) and len(inbox) == 0


def test_a_drain_closed_early_still_counts_what_it_took() -> None:
    inbox = Inbox(1000, PipelineStats())
    inbox.replay = lambda item: None if item % 2 else ("live", item)
    for i in range(10):
        inbox._items.append(i)
    drain = inbox.drain(lambda: True)
    assert next(drain) == ("live", 0)
    assert next(drain) == ("live", 2)
    drain.close()
    assert inbox.skipped == 1 and len(inbox) == 7


def test_a_pump_stops_at_its_slice_on_spans_of_no_task_and_counts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = _Idle(_config(SPANVISOR_INBOX_SIZE="5000"), [])
    _plain_spans(pipeline, 1000)
    inbox = pipeline._inbox
    assert len(inbox) == 2000
    counted: list[int] = []
    monkeypatch.setattr(pipeline._tracked, "add", lambda n, started=None: counted.append(n))
    # A slice already over: the drain stops at its first look at the clock,
    # and the pump says there is more.
    assert pipeline._pump(0.0) is True
    assert counted == [CHECK_EVERY - 1] and len(inbox) == 2000 - (CHECK_EVERY - 1)
    assert pipeline._pump() is False  # no slice: the rest
    assert sum(counted) == 2000 and len(inbox) == 0


def _kinds(sliced: bool) -> list[str]:
    """The events' kinds of one task among many spans of no task, pumped in
    slices already over at once (the fewest items a pump takes) or whole."""
    pipeline = _Idle(_config(SPANVISOR_INBOX_SIZE="5000"), [])
    seen: list[str] = []
    pipeline._dispatch = lambda events, tails=True: seen.extend(e.kind for e in events)  # type: ignore[method-assign]
    provider = _plain_spans(pipeline, 300)
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("task", attributes={cv.TASK_NAME: "t", cv.AGENT_ID: "a"}):
        for _ in range(300):
            with tracer.start_as_current_span("tool", attributes={"gen_ai.operation.name": "execute_tool"}):
                pass
    for _ in range(300):
        with tracer.start_as_current_span("plain"):
            pass
    pumps = 1
    while pipeline._pump(0.0 if sliced else None):
        pumps += 1
    assert len(pipeline._inbox) == 0 and (pumps > 1) is sliced
    return seen


def test_a_task_among_spans_of_no_task_gives_the_same_events_in_slices() -> None:
    whole = _kinds(sliced=False)
    assert "TaskFinished" in whole
    assert _kinds(sliced=True) == whole


def test_a_drain_past_its_deadline_stops_after_the_entry_it_gave() -> None:
    """What the caller does with an entry (tracking it) costs far more than
    reading the clock: the drain looks after each one, not every 64 items."""
    inbox = Inbox(1000, PipelineStats())
    inbox.replay = lambda item: ("live", item)
    for i in range(200):
        inbox._items.append(i)
    assert list(inbox.drain(lambda: True, until=time.monotonic() - 1.0)) == [("live", 0)]
    assert inbox.stopped and len(inbox) == 199
