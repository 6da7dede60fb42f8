"""Poison events: one event a sink keeps raising on is set aside, the rest flow.

Real SDK spans through the exporter path into a real Pipeline; the sinks are
small real sinks defined here. The rule under test (src/spanvisor/worker.py):
an event is set aside only when the sink answered other events since it
started failing; a sink that raises on everything is down, not poisoned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanvisor.cli.main import main
from spanvisor.config import Config
from spanvisor.events import Checkpoint, Event, TaskStarted
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.pipeline.deadletter import DeadLetterStore, store_dir
from spanvisor.sink import SinkResult
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink

Predicate = Callable[[Event], bool]


class PickySink(InMemorySink):
    """Raises on the events ``bad`` picks (a bug in a third-party sink), unless ``healed``."""

    name = "picky"

    def __init__(self, bad: Predicate) -> None:
        super().__init__()
        self.bad = bad
        self.healed = False

    async def export(self, events: Sequence[Event]) -> SinkResult:
        if not self.healed and any(self.bad(e) for e in events):
            raise ValueError("cannot render this event")
        return await super().export(events)


def _spans(tasks: Sequence[str], checkpoints: int = 4) -> list[ReadableSpan]:
    """Ended SDK spans of one root per task, each with ``checkpoints`` checkpoint events."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("agent")
    for name in tasks:
        with tracer.start_as_current_span(name, attributes={cv.TASK_NAME: name, cv.AGENT_ID: "a"}) as root:
            for i in range(checkpoints):
                root.add_event(cv.EVENT_CHECKPOINT, {"message": f"{name} step {i}", "poison": (name, i) == ("A", 2)})
    provider.shutdown()
    return list(exported.get_finished_spans())


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[[PickySink], tuple[InMemorySink, SpanvisorSpanExporter]]]:
    """Feed the spans to a pipeline with the picky sink and a healthy reference sink."""
    owners: list[SpanvisorSpanExporter] = []

    def start(picky: PickySink) -> tuple[InMemorySink, SpanvisorSpanExporter]:
        reference = InMemorySink()
        config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=()).with_values(shutdown_timeout_s=2.0)
        exporter = SpanvisorSpanExporter(sinks=[picky, reference], config=config)
        owners.append(exporter)
        exporter.export(_spans(["A", "B"]))
        return reference, exporter

    yield start
    for exporter in owners:
        exporter.pipeline.shutdown(2.0)


def _poisoned(e: Event) -> bool:
    return isinstance(e, Checkpoint) and e.attributes.get("poison") is True


def _dead_letters(tmp_path: Path, sink: str) -> list[str]:
    store = DeadLetterStore(store_dir(tmp_path))
    try:
        return [d.event_id for d in store.entries(sink=sink)]
    finally:
        store.close()


@pytest.mark.slow
def test_one_bad_event_is_set_aside_and_the_rest_are_delivered_in_order(
    run: Callable[[PickySink], tuple[InMemorySink, SpanvisorSpanExporter]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    picky = PickySink(_poisoned)
    with caplog.at_level(logging.ERROR, logger="spanvisor.pipeline"):
        reference, exporter = run(picky)
        assert exporter.force_flush(30_000)
    (bad,) = [e for e in reference.events if _poisoned(e)]
    # Everything else arrived, in the order the tracker produced it.
    assert [e.event_id for e in picky.events] == [e.event_id for e in reference.events if e is not bad]
    assert _dead_letters(tmp_path, "picky") == [bad.event_id]
    assert exporter.stats.value("sink_dead_letters_total", sink="picky") == 1
    assert exporter.stats.total("dropped_total") == 0
    assert len([r for r in caplog.records if bad.event_id in r.getMessage()]) == 1

    # The operator's view of it, through the CLI.
    env = {"SPANVISOR_DATA_DIR": str(tmp_path)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        capsys.readouterr()
        assert main(["deadletter", "list", "--sink", "picky", "--json"]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        listed = json.loads(line)
        assert listed["event_id"] == bad.event_id and listed["kind"] == "Checkpoint"
        assert "cannot render this event" in listed["error"]
        assert main(["deadletter", "list"]) == 0
        assert bad.event_id in capsys.readouterr().out
        # No entry point builds "picky": retry says so and keeps the event.
        assert main(["deadletter", "retry", "--sink", "picky"]) == 1
        assert "sink unavailable" in capsys.readouterr().out
    assert _dead_letters(tmp_path, "picky") == [bad.event_id]


@pytest.mark.slow
def test_a_bad_first_event_holds_only_its_task_until_others_prove_the_sink_works(
    run: Callable[[PickySink], tuple[InMemorySink, SpanvisorSpanExporter]], tmp_path: Path
) -> None:
    # The very first event fails: nothing answered before it, so its task is
    # held (not set aside) until task B's events go through.
    picky = PickySink(lambda e: isinstance(e, TaskStarted) and e.task.task_name == "A")
    reference, exporter = run(picky)
    assert exporter.force_flush(30_000)
    (bad,) = [e for e in reference.events if isinstance(e, TaskStarted) and e.task.task_name == "A"]
    assert _dead_letters(tmp_path, "picky") == [bad.event_id]
    for task_id in {e.task_id for e in reference.events}:
        expected = [e.event_id for e in reference.for_task(task_id) if e is not bad]
        assert [e.event_id for e in picky.for_task(task_id)] == expected


@pytest.mark.slow
def test_a_sink_that_raises_on_everything_is_down_not_poisoned(
    run: Callable[[PickySink], tuple[InMemorySink, SpanvisorSpanExporter]], tmp_path: Path
) -> None:
    picky = PickySink(lambda e: True)
    reference, exporter = run(picky)
    assert not exporter.force_flush(4_000)  # it delivered nothing...
    assert _dead_letters(tmp_path, "picky") == []  # ...and set nothing aside
    picky.healed = True  # back: every event arrives, each task in order
    assert exporter.force_flush(60_000)
    assert _dead_letters(tmp_path, "picky") == []
    assert exporter.stats.value("sink_dead_letters_total", sink="picky") == 0
    assert sorted(e.event_id for e in picky.events) == sorted(e.event_id for e in reference.events)
    for task_id in {e.task_id for e in reference.events}:
        assert [e.event_id for e in picky.for_task(task_id)] == [e.event_id for e in reference.for_task(task_id)]


@pytest.mark.slow
def test_plain_retry_never_sets_anything_aside(
    run: Callable[[PickySink], tuple[InMemorySink, SpanvisorSpanExporter]], tmp_path: Path
) -> None:
    class DownSink(PickySink):
        async def export(self, events: Sequence[Event]) -> SinkResult:
            if not self.healed:
                return SinkResult.RETRY  # a durable sink whose database is away
            return await InMemorySink.export(self, events)

    down = DownSink(lambda e: True)
    reference, exporter = run(down)
    assert not exporter.force_flush(3_000)
    down.healed = True
    assert exporter.force_flush(60_000)
    assert [e.event_id for e in down.events] == [e.event_id for e in reference.events]
    assert _dead_letters(tmp_path, "picky") == []
