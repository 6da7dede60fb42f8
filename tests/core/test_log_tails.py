"""Log tails in-process: an agent's stdlib logging, through the OTel SDK's
LoggingHandler and spanvisor's log processor, into its failed task's
TaskFinished (a real Pipeline with an InMemorySink)."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.trace import Status, StatusCode

from spanvisor.events import Checkpoint, TaskFinished, TaskStarted, TaskView
from spanvisor.logtails.records import MAX_TAIL_BYTES, LogIn
from spanvisor.logtails.tails import MAX_PENDING_TRACES, LogTails
from spanvisor.otel.logs import SpanvisorLogExporter, SpanvisorLogProcessor
from spanvisor.spans import conventions as cv
from spanvisor.stats import PipelineStats
from spanvisor.testing import InMemorySink

from ._sdk import Agent

SECRET = "xoxb-1234567890-abcdefghij"


@pytest.fixture
def logged(agent: Agent) -> Iterator[logging.Logger]:
    """A stdlib logger whose records go through the SDK handler to spanvisor."""
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SpanvisorLogProcessor(agent.processor))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's handler is deprecated, still the common one
        handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    logger = logging.getLogger(f"agent.test.{id(agent)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)
    provider.shutdown()


def _finished(memory: InMemorySink) -> dict[str, TaskFinished]:
    return {e.task.task_name or "": e for e in memory.of_type(TaskFinished)}


def test_a_failed_task_carries_its_last_warning_and_error_lines(
    agent: Agent, memory: InMemorySink, logged: logging.Logger
) -> None:
    logged.warning("outside any task: not kept")
    with agent.tracer.start_as_current_span("fix bug", attributes={cv.TASK_NAME: "fix bug"}) as root:
        logged.debug("reading the repository")
        logged.info("calling the model")
        logged.warning("retrying: rate limited, token %s", SECRET)
        logged.info("parsing the answer")
        logged.error("could not parse the model's answer")
        root.set_status(Status(StatusCode.ERROR, "parse failed"))
    with agent.tracer.start_as_current_span("ok task", attributes={cv.TASK_NAME: "ok task"}):
        logged.warning("slow disk")
    assert agent.flush()
    done = _finished(memory)
    failed = done["fix bug"]
    assert failed.outcome == "error"
    got = [(line.level, line.message) for line in failed.log_tail]
    # The floor is WARNING; the lines below it just before the error come too,
    # those logged before the pipeline heard of the task included.
    assert got == [
        ("DEBUG", "reading the repository"),
        ("INFO", "calling the model"),
        ("WARN", "retrying: rate limited, token xox?-****"),
        ("INFO", "parsing the answer"),
        ("ERROR", "could not parse the model's answer"),
    ]
    assert all(SECRET not in line.message for line in failed.log_tail)
    assert {line.logger for line in failed.log_tail} == {logged.name}
    assert [line.time_ns for line in failed.log_tail] == sorted(line.time_ns for line in failed.log_tail)
    # A completed task's warnings stay out of its summary.
    assert done["ok task"].outcome == "complete"
    assert done["ok task"].log_tail == ()
    assert agent.processor.pipeline.stats.value("log_records_total", outcome="no_task") >= 1


def test_the_exporter_feeds_the_same_tails(agent: Agent, memory: InMemorySink) -> None:
    """OTEL_LOGS_EXPORTER=spanvisor: records arrive in batches, still before the root's end here."""
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(SpanvisorLogExporter(agent.processor)))
    logger = provider.get_logger("agent.exporter")
    from opentelemetry._logs import SeverityNumber

    with agent.tracer.start_as_current_span("deploy", attributes={cv.TASK_NAME: "deploy"}) as root:
        logger.emit(
            severity_number=SeverityNumber.ERROR, severity_text="ERROR", body="deploy refused: password=hunter2"
        )
        root.set_status(Status(StatusCode.ERROR, "refused"))
    assert agent.flush()
    tail = _finished(memory)["deploy"].log_tail
    assert [(line.level, line.message, line.logger) for line in tail] == [
        ("ERROR", "deploy refused: password=****", "agent.exporter")
    ]
    provider.shutdown()


def test_a_tail_is_bounded_in_lines_and_bytes(agent: Agent, memory: InMemorySink, logged: logging.Logger) -> None:
    with agent.tracer.start_as_current_span("noisy", attributes={cv.TASK_NAME: "noisy"}) as root:
        for i in range(500):
            logged.warning("line %d %s", i, "x" * 800)
        root.set_status(Status(StatusCode.ERROR, "boom"))
    assert agent.flush()
    tail = _finished(memory)["noisy"].log_tail
    assert 1 <= len(tail) <= 20
    assert sum(len(line.message) for line in tail) <= MAX_TAIL_BYTES
    assert tail[-1].message.startswith("line 499 ")


def _record(trace: int, i: int, severity: int = 13) -> LogIn:
    return LogIn(trace, 1, i, severity, None, "flood", f"message {i}")


def test_a_flood_stays_bounded_and_counts_what_it_drops() -> None:
    """200,000 records from four threads, most of traces with no task: the
    memory held stays bounded, nothing raises, drops are counted."""
    stats = PipelineStats()
    tails = LogTails(None, stats)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]

        def produce(offset: int) -> None:
            for i in range(50_000):
                # 5,000 distinct traces a thread, nearly all without a task.
                tails.add([_record(offset * 1_000_000 + i % 5_000 + 1, i)])

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The bound is checked without a lock: each producer may pass it by one.
    assert len(tails._pending) <= MAX_PENDING_TRACES + len(threads)
    # A pending ring holds at most 20 + 5 records of ~200 bytes each.
    assert held < MAX_PENDING_TRACES * 25 * 600
    tails.sync()
    assert stats.value("dropped_total", reason="log_pending_full", sink="") > 0
    # Records below the floor of unknown traces are counted, not kept.
    assert tails.add([_record(10**12, 1, severity=9)])
    tails.sync()
    assert stats.value("log_records_total", outcome="no_task") == 1


ZERO_CODE = textwrap.dedent(
    """
    import logging, warnings
    from opentelemetry import trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode
    from spanvisor.otel.autoconfig import install_live_processor
    from spanvisor.otel.exporter import SpanvisorSpanExporter

    # What opentelemetry-instrument sets up with OTEL_TRACES_EXPORTER=spanvisor
    # and OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true, then its
    # opentelemetry_pre_instrument hook (no SPANVISOR_LIVE).
    exporter = SpanvisorSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logs = LoggerProvider()
    set_logger_provider(logs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logging.getLogger().addHandler(LoggingHandler(logger_provider=logs))
    install_live_processor()

    tracer = trace.get_tracer("agent")
    with tracer.start_as_current_span("job", attributes={"agent.task.name": "job"}) as root:
        logging.getLogger("agent").error("it broke")
        root.set_status(Status(StatusCode.ERROR, "broke"))
    provider.force_flush()
    assert exporter.force_flush(10_000)
    print("attached", exporter.pipeline.stats.value("log_records_total", outcome="attached"))
    provider.shutdown()
    """
)


def test_the_exporter_alone_installs_the_log_processor(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=spanvisor: the pre-instrument hook adds the log
    processor to the SDK's LoggerProvider, into the exporter's pipeline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    env.update(
        XDG_DATA_HOME=str(tmp_path),
        SPANVISOR_SINKS="console",
        SPANVISOR_STATE_STORE="memory",
        OTEL_TRACES_EXPORTER="spanvisor",
    )
    proc = subprocess.run(
        [sys.executable, "-c", ZERO_CODE], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attached 1" in proc.stdout, proc.stdout + proc.stderr


def _view(task_id: str, trace: str, started: int, ended: int | None = None) -> TaskView:
    return TaskView(
        task_id=task_id,
        trace_id=trace,
        root_span_id="00000000000000a1",
        agent_id="rivet",
        started_ns=started,
        ended_ns=ended,
    )


def _done(view: TaskView, outcome: str, at: int) -> TaskFinished:
    ended = dataclasses.replace(view, ended_ns=at)
    return TaskFinished(event_id=f"f-{view.task_id}", time_ns=at, task=ended, outcome=outcome, duration_s=1.0)  # type: ignore[arg-type]


def test_enrich_two_tasks_of_one_trace_and_late_events() -> None:
    """Two tasks share a trace: each tail holds the lines of its own time; a
    finished task's late event does not reopen it; a completed task gets none."""
    stats = PipelineStats()
    tails = LogTails(None, stats)
    trace = "0" * 31 + "5"
    tid = int(trace, 16)
    first, second = _view("T1", trace, 100), _view("T2", trace, 300)
    tails.enrich(
        [TaskStarted(event_id="s1", time_ns=100, task=first), TaskStarted(event_id="s2", time_ns=300, task=second)]
    )
    assert tails._per_trace == {tid: 2}  # kept only for a trace of more than one open task
    tails.add([LogIn(tid, 1, 150, 13, None, "a", "first's warning"), LogIn(tid, 1, 160, 9, None, "a", "first's info")])
    tails.add([LogIn(tid, 2, 350, 17, None, "b", "second's error")])
    [one] = tails.enrich([_done(first, "cancelled", 200)])
    assert isinstance(one, TaskFinished)
    assert tails._per_trace == {} and tails._known == {tid}  # one open task left
    # The info line came into the trace's kept lines ahead of the second's
    # error; each task takes those of its own time.
    assert [line.message for line in one.log_tail] == ["first's warning", "first's info"]
    [two] = tails.enrich([_done(second, "error", 400)])
    assert isinstance(two, TaskFinished)
    assert [line.message for line in two.log_tail] == ["second's error"]
    # A late checkpoint of a finished task (its final view) opens nothing.
    late = Checkpoint(event_id="late", time_ns=500, task=dataclasses.replace(second, ended_ns=400))
    tails.enrich([late])
    assert tails._tasks == {} and tails._known == set() and tails._open == {}
    third = _view("T3", "0" * 31 + "6", 600)
    tails.enrich([TaskStarted(event_id="s3", time_ns=600, task=third)])
    tails.add([LogIn(int(third.trace_id, 16), 1, 650, 17, None, "c", "error, then success")])
    [three] = tails.enrich([_done(third, "complete", 700)])
    assert isinstance(three, TaskFinished) and three.log_tail == ()
    assert stats.value("log_records_total", outcome="attached") == 3


def test_a_task_that_logs_nothing_holds_no_ring() -> None:
    """Most tasks log nothing: a task's ring comes with its first record (the
    memory of 10,000 open tasks), and records then still reach it."""
    tails = LogTails(None, PipelineStats())
    views = [_view(f"T{i}", f"{i + 1:032x}", 100) for i in range(100)]
    tails.enrich([TaskStarted(event_id=f"s{i}", time_ns=100, task=v) for i, v in enumerate(views)])
    assert tails._tasks == {} and len(tails._known) == 100
    tails.add([LogIn(int(views[7].trace_id, 16), 1, 150, 17, None, "c", "boom")])
    assert list(tails._tasks) == [int(views[7].trace_id, 16)]
    [done] = tails.enrich([_done(views[7], "error", 200)])
    assert isinstance(done, TaskFinished) and [line.message for line in done.log_tail] == ["boom"]


def test_a_task_renamed_by_its_root_keeps_its_tail_and_holds_nothing_after() -> None:
    """A provisional task shown under a derived id whose root names its own
    (``former_id``): its tail is its own, and nothing of it stays open."""
    tails = LogTails(None, PipelineStats())
    trace = "0" * 31 + "7"
    shown = _view("derived", trace, 100)
    tails.enrich([TaskStarted(event_id="s", time_ns=100, task=shown)])
    tails.add([LogIn(int(trace, 16), 1, 150, 17, None, "c", "boom")])
    named = dataclasses.replace(shown, task_id="fix-42", former_id="derived")
    [done] = tails.enrich([_done(named, "error", 200)])
    assert isinstance(done, TaskFinished) and [line.message for line in done.log_tail] == ["boom"]
    assert tails._open == {} and tails._known == set() and tails._tasks == {}
