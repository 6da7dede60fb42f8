"""One framework run through spanvisor, and what a person would see of it.

Each path is a real TracerProvider: ``processor`` (in-process, start order),
``exporter`` (``SpanvisorSpanExporter`` behind a ``SimpleSpanProcessor``,
end order), ``serve`` (the OTLP/HTTP exporter to spanvisor's receiver on
loopback, as behind a Collector: end order, no stamps) or ``stamped`` (the
same receiver fed by an agent that also runs ``SpanvisorSpanProcessor``
beside its OTLP exporter: with ``SPANVISOR_STAMP_SPANS=auto`` the processor
sees another processor and stamps every span of a task as it starts, so the
receiver groups spans by the stamp), recording into an ``InMemorySink`` and
the console sink (what the Slack parent and thread show). ``gpt-4o``'s window
is set to 10,000 tokens so a realistic run crosses the 70 % and 85 % levels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    Span,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from spanvisor.config import Config
from spanvisor.events import Checkpoint, ContextWarning, Event, TaskFinished, TaskStarted
from spanvisor.otel.exporter import SpanvisorSpanExporter
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.sink import Sink
from spanvisor.testing import InMemorySink
from spanvisor_console import ConsoleSink

from ..conftest import in_ci
from ..core._invariants import check_stream
from .envs import _live

Path = Literal["processor", "exporter", "serve", "stamped"]
PATHS: tuple[Path, ...] = ("processor", "exporter", "serve", "stamped")
WINDOW = 10_000
SERVICE = "frameworks-test-service"


def need(module: str) -> None:
    """The framework's import: a skip on a developer's machine without the
    extra, a failure under CI (``make test`` installs it)."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        msg = f"{module} is not available ({exc}; install: pip install -e '.[frameworks-test]')"
        if in_ci():
            pytest.fail(f"{msg}; CI={os.environ.get('CI')!r} requires it, so this test may not skip", pytrace=False)
        pytest.skip(msg, allow_module_level=True)  # called as the module is imported


def config(**overrides: Any) -> Config:
    return Config.load(env={}, extra=()).with_values(
        shutdown_timeout_s=2.0, model_context_windows={"gpt-4o": WINDOW}, **overrides
    )


class Serve:
    """spanvisor's OTLP receiver (what ``spanvisor serve`` runs) on its own
    loop thread, on free loopback ports, over a receiver-path pipeline."""

    def __init__(self, sinks: list[Sink], **overrides: Any) -> None:
        self.pipeline = Pipeline(config=config(**overrides), sinks=sinks, path="receiver").start()
        assert self.pipeline.wait_ready(30), "the sinks did not start"
        settings = dataclasses.replace(
            ReceiverSettings.from_config(Config.load(env={})),
            bind="127.0.0.1",
            http_port=0,
            grpc_port=0,
            admin_port=0,
            journal_path=None,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(self.pipeline, settings)
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(30)
        self.url = f"http://127.0.0.1:{self.receiver.http_port}/v1/traces"

    def force_flush(self, timeout_millis: int) -> bool:
        return self.pipeline.force_flush(timeout_millis / 1000)

    def close(self) -> None:
        stop = self.receiver.stop(self.pipeline.shutdown)
        asyncio.run_coroutine_threadsafe(stop, self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Run:
    """The provider a framework is instrumented with, and what spanvisor made of it."""

    path: Path
    provider: TracerProvider
    memory: InMemorySink
    console: io.StringIO
    _owner: SpanvisorSpanProcessor | SpanvisorSpanExporter | Serve = field(repr=False)
    # The agent's own spanvisor on the ``stamped`` path (its events unread).
    _agent: SpanvisorSpanProcessor | None = field(default=None, repr=False)

    def until(self, done: Callable[[list[Event]], bool], timeout_s: float = 30.0) -> list[Event]:
        """The events once ``done`` says so (the pipeline's clock works: a
        held root released, a quiet task finished), or as they are at the
        timeout; never a timing assertion, only a wait."""
        deadline = time.monotonic() + timeout_s
        events = self.flush()
        while not done(events) and time.monotonic() < deadline:
            time.sleep(0.1)
            events = self.flush()
        return events

    def flush(self) -> list[Event]:
        self.provider.force_flush()
        if self._agent is not None:
            assert self._agent.force_flush(10_000)
        assert self._owner.force_flush(10_000)
        return list(self.memory.events)


class Switch(SpanProcessor):
    """One provider for a whole module, its spans going to this test's path:
    an instrumentation that keeps its first tracer after ``uninstrument``
    (OpenLLMetry's LangChain one) is instrumented once."""

    def __init__(self) -> None:
        self.target: SpanProcessor | None = None
        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}), shutdown_on_exit=False)
        self.provider.add_span_processor(self)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.target is not None:
            self.target.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.target is not None:
            self.target.on_end(span)

    def _on_ending(self, span: Span) -> None:
        # The SDK's hook between a span's end and every on_end: where the
        # stamping processor puts a dropped identity back.
        if self.target is not None:
            self.target._on_ending(span)


@contextmanager
def spanvisor(path: Path, switch: Switch | None = None, **overrides: Any) -> Iterator[Run]:
    """spanvisor on ``path``; ``overrides``: settings of spanvisor's own
    config there (the agent's spanvisor on ``stamped`` keeps the defaults)."""
    memory = InMemorySink()
    out = io.StringIO()
    sinks: list[Sink] = [memory, ConsoleSink(stream=out, interval_s=3600)]
    if switch is None:
        switch = Switch()
    owner: SpanvisorSpanProcessor | SpanvisorSpanExporter | Serve
    agent: SpanvisorSpanProcessor | None = None
    if path == "processor":
        owner = SpanvisorSpanProcessor(sinks=sinks, config=config(**overrides))
        switch.target = owner
    elif path == "exporter":
        owner = SpanvisorSpanExporter(sinks=sinks, config=config(**overrides))
        switch.target = SimpleSpanProcessor(owner)
    else:
        owner = Serve(sinks, **overrides)
        export = SimpleSpanProcessor(OTLPSpanExporter(endpoint=owner.url, timeout=20))
        if path == "serve":
            switch.target = export
        else:
            # As an agent adds them: spanvisor's processor first, then its exporter.
            agent = SpanvisorSpanProcessor(sinks=[InMemorySink()], config=config())
            both = SynchronousMultiSpanProcessor()
            both.add_span_processor(agent)
            both.add_span_processor(export)
            switch.target = both
    run = Run(path, switch.provider, memory, out, owner, agent)
    try:
        yield run
    finally:
        switch.target = None
        if agent is not None:
            agent.pipeline.shutdown(2.0)
        if isinstance(owner, Serve):
            owner.close()
        else:
            owner.pipeline.shutdown(2.0)


@dataclass(frozen=True)
class Seen:
    """One task as a person sees it."""

    started: TaskStarted
    finished: TaskFinished
    events: tuple[Event, ...]

    @property
    def model_calls(self) -> list[Checkpoint]:
        return [e for e in self.events if isinstance(e, Checkpoint) and e.source == "model_call"]

    @property
    def tools(self) -> list[str]:
        return [str(e.attributes["tool"]) for e in self.events if isinstance(e, Checkpoint) and e.source == "tool_call"]

    @property
    def warnings(self) -> list[float]:
        return [e.threshold for e in self.events if isinstance(e, ContextWarning)]

    @property
    def named(self) -> set[tuple[str | None, str, str | None]]:
        """(title, agent id, agent name) of every view its root had named:
        those of a task shown before its root arrived are a stand-in
        (:func:`assert_shown_before_its_root`)."""
        return {(e.task.task_name, e.task.agent_id, e.task.agent_name) for e in self.events if not e.task.provisional}


def assert_shown_before_its_root(task: Seen) -> None:
    """On ``serve`` (unstamped spans, each exported as it ends, as a
    Collector delivers them), a framework that ends children before its root
    shows its task from its first model calls, before the root arrives: a
    provisional task
    (docs/reference/conventions.md#provisional-tasks), under a stand-in title and the
    service's agent (never a sub-agent's), with its model calls counted as
    they land; its root names it and ends it."""
    early = [e for e in task.events if e.task.provisional]
    assert early and early[0] is task.started, [(e.kind, e.task.provisional) for e in task.events]
    assert [e for e in early if isinstance(e, Checkpoint) and e.source == "model_call"], "no call shown early"
    for e in early:
        agent = e.task.agent_id
        assert e.task.task_name == f"{agent} — running", (e.kind, e.task.task_name)
        assert agent in (SERVICE, task.finished.task.agent_id), (e.kind, agent)  # never a sub-agent's
    assert not task.finished.task.provisional


def tasks(events: Sequence[Event]) -> list[Seen]:
    """Every task, in the order they started; the stream checker first."""
    check_stream(events, all_finished=True)
    out: list[Seen] = []
    for e in events:
        if isinstance(e, TaskStarted):
            own = tuple(x for x in events if x.task_id == e.task_id)
            fin = [x for x in own if isinstance(x, TaskFinished)]
            out.append(Seen(e, fin[-1], own))
    return out


def one_task(events: Sequence[Event]) -> Seen:
    found = tasks(events)
    assert len(found) == 1, [(t.started.task.task_name, t.started.task.agent_id) for t in found]
    return found[0]


def assert_the_scripted_run(task: Seen, tools: list[str]) -> None:
    """The matrix's scripted run, complete: 3 calls of the triage agent
    (2,000 → 8,800 input tokens on gpt-4o) and 1 of the expert inside it
    (600), 80 output tokens each, counted once; both context levels crossed;
    ``tools`` the steps; every call priced."""
    v = task.finished.task
    assert task.finished.outcome == "complete"
    assert len(task.model_calls) == 4
    assert v.input_tokens == 2_000 + 5_000 + 8_800 + 600
    assert v.output_tokens == 4 * 80
    assert v.model == "gpt-4o" and v.context_limit == WINDOW
    assert task.warnings == [0.70, 0.85]
    assert task.tools == tools
    assert v.cost_usd > 0 and v.unpriced_calls == 0


def param_paths() -> pytest.MarkDecorator:
    return pytest.mark.parametrize("path", PATHS)


@contextmanager
def live(run: Run) -> Iterator[list[dict[str, Any]]]:
    """Within: the run's first ``lookup`` tool call (``envs/_live.py``'s
    probe, after the first model call) notes what the processor's sink
    showed of the task at that moment, mid-run."""
    assert run.path == "processor"
    _live.arm(run.memory.events)
    try:
        yield _live.seen
    finally:
        _live.disarm()


def shown_live(seen: list[dict[str, Any]]) -> bool:
    """The task was shown at the run's first tool call. Its first model call
    may not be yet: Google ADK's ``generate_content`` span stays open while
    the tools it asked for run, so that call shows once they are done."""
    return bool(seen) and seen[0]["started"]


@contextmanager
def instrumented_run(path: Path, instrumentor: Any, switch: Switch | None = None, **overrides: Any) -> Iterator[Run]:
    """spanvisor on ``path`` with a framework's instrumentor on its provider,
    uninstrumented afterwards (the next test's instrumentor starts clean)."""
    with spanvisor(path, switch, **overrides) as run:
        instrumentor.instrument(tracer_provider=run.provider)
        try:
            yield run
        finally:
            instrumentor.uninstrument()
