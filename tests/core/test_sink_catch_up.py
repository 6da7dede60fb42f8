"""A sink behind by more than a batch catches up in larger calls, if it says so.

A sink whose cost is mostly per call (the PostgreSQL sink: a transaction
per export) declares ``catch_up_batches``: while more than one batch is
queued, the worker hands it up to that many batches at once; otherwise, and
for every other sink, ``batch_size`` stays the most per call. Real SDK spans
through the exporter path into a real Pipeline; the sinks are defined here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.sink import SinkResult
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

BATCH = 5


class GatedSink(InMemorySink):
    """Holds its first export until ``gate`` is set (a slow transaction),
    so the rest queue up behind it; records each call's size."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.sizes: list[int] = []

    async def export(self, events: Sequence[Event]) -> SinkResult:
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        self.sizes.append(len(events))
        return await super().export(events)


class CatchingUpSink(GatedSink):
    name = "catching-up"
    catch_up_batches: ClassVar[int] = 4


def _spans(tasks: int = 3, checkpoints: int = 20) -> list[ReadableSpan]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("agent")
    for t in range(tasks):
        name = f"task-{t}"
        with tracer.start_as_current_span(name, attributes={cv.TASK_NAME: name, cv.AGENT_ID: "a"}) as root:
            for i in range(checkpoints):
                root.add_event(cv.EVENT_CHECKPOINT, {"message": f"{name} step {i}"})
    provider.shutdown()
    return list(exported.get_finished_spans())


@pytest.fixture
def exporter_for(tmp_path: Path) -> Iterator[list[SpanvisorSpanExporter]]:
    owners: list[SpanvisorSpanExporter] = []
    yield owners
    for exporter in owners:
        exporter.pipeline.shutdown(2.0)


def _deliver(tmp_path: Path, owners: list[SpanvisorSpanExporter], sink: GatedSink) -> InMemorySink:
    reference = InMemorySink()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=()).with_values(batch_size=BATCH)
    exporter = SpanvisorSpanExporter(sinks=[sink, reference], config=config)
    owners.append(exporter)
    exporter.export(_spans())
    wait_until(lambda: len(reference.events) >= 60, what="the reference sink to have every event")
    sink.gate.set()
    wait_until(lambda: len(sink.events) == len(reference.events), what="the gated sink to catch up")
    # Nothing lost, nothing doubled, in the tracker's order.
    assert [e.event_id for e in sink.events] == [e.event_id for e in reference.events]
    return reference


def test_a_sink_that_catches_up_takes_up_to_its_batches_at_once(
    tmp_path: Path, exporter_for: list[SpanvisorSpanExporter]
) -> None:
    sink = CatchingUpSink()
    _deliver(tmp_path, exporter_for, sink)
    assert max(sink.sizes) == BATCH * 4, sink.sizes
    assert all(n <= BATCH * 4 for n in sink.sizes)


def test_any_other_sink_gets_at_most_a_batch(tmp_path: Path, exporter_for: list[SpanvisorSpanExporter]) -> None:
    sink = GatedSink()
    _deliver(tmp_path, exporter_for, sink)
    assert max(sink.sizes) == BATCH, sink.sizes


class HeldOnCatchUp(InMemorySink):
    """Holds its first export until ``gate``, then its first catch-up
    export (more than a batch) while ``holding`` is set."""

    name = "held-on-catch-up"
    catch_up_batches: ClassVar[int] = 4

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.first = threading.Event()
        self.held = False

    async def export(self, events: Sequence[Event]) -> SinkResult:
        if not self.first.is_set():
            self.first.set()
            while not self.gate.is_set():  # the first batch: let the rest queue behind it
                await asyncio.sleep(0.01)
        elif len(events) > BATCH and not self.held:
            self.held = True
            self.holding.set()
            while self.holding.is_set():  # until the test has looked
                await asyncio.sleep(0.01)
        return await super().export(events)


def test_a_catch_up_export_still_counts_against_admission(
    tmp_path: Path, exporter_for: list[SpanvisorSpanExporter]
) -> None:
    """The batches a catch-up took out of the queue count against the
    receiver's admission while they are out (on a retry, say), past the one
    batch an export always could hold."""
    sink = HeldOnCatchUp()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=()).with_values(batch_size=BATCH)
    exporter = SpanvisorSpanExporter(sinks=[sink], config=config)
    exporter_for.append(exporter)
    exporter.export(_spans())
    wait_until(sink.first.is_set, what="the first export")
    worker = next(w for w in exporter.pipeline._workers if w.name == sink.name)
    wait_until(lambda: worker._events_queued > 4 * BATCH, what="more than a catch-up queued")
    sink.gate.set()
    wait_until(sink.holding.is_set, what="a catch-up export held")
    room = int(worker._size * 0.8) - worker._events_queued
    assert worker._in_flight == 4 * BATCH
    assert worker.has_room(room - 3 * BATCH)
    assert not worker.has_room(room - 3 * BATCH + 1)
    sink.holding.clear()
    wait_until(lambda: worker._events_queued == 0 and worker._in_flight == 0, what="the sink to catch up")
