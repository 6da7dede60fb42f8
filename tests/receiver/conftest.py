"""Receiver test helpers: a real Pipeline with real sinks, and a receiver on
its own thread (the OTel exporters are synchronous).

No stand-in pipeline: what the receiver relies on (``submit_spans`` is all
or nothing and never blocks, ``accepting``, ``ready``, ``force_flush``,
``stats``, ``shared``) is exercised on :class:`spanvisor.pipeline.Pipeline`.
A test stalls it with a durable sink that waits, or fails it with a sink
that fails.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))


from spanvisor.config import Config
from spanvisor.events import Event, TaskFinished
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.sink import Sink, SinkResult
from spanvisor.testing import InMemorySink


class StalledDurableSink(InMemorySink):
    """A durable sink whose exports wait until the test opens the gate."""

    name = "stalled"
    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def export(self, events: Sequence[Event]) -> SinkResult:
        while not self.gate.is_set():  # a threading.Event, set from the test's thread
            await asyncio.sleep(0.02)
        return await super().export(events)


def make_pipeline(tmp_path: Path, sinks: Sequence[Sink], plugins: bool = False, **env: str) -> Pipeline:
    """A started receiver-path Pipeline over ``sinks``; ``env`` adds SPANVISOR_* settings
    (the plugins' own settings too when ``plugins``)."""
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path), **env}, extra=None if plugins else [])
    pipeline = Pipeline(config=config, sinks=list(sinks), path="receiver").start()
    assert pipeline.wait_ready(30), "the sinks did not start"
    return pipeline


def finished(sink: InMemorySink) -> list[str]:
    return sorted(e.task_id for e in sink.of_type(TaskFinished))


def requests(pipeline: Pipeline, transport: str, outcome: str) -> float:
    return pipeline.stats.value("receiver_requests_total", transport=transport, outcome=outcome)


class RunningReceiver:
    """A Receiver on a private event loop thread, for sync OTel exporters."""

    def __init__(
        self, pipeline: Any, settings: ReceiverSettings, admin_extra: Sequence[Any] = (), **start: Any
    ) -> None:
        """``start``: passed to :meth:`Receiver.start` (``rebuild``, ``start_pipeline``)."""
        self.pipeline = pipeline
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(pipeline, settings, admin_extra=admin_extra)
        self.call(self.receiver.start(**start))

    def call(self, coro: Any, timeout: float = 30) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver.http_port}/v1/traces"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.receiver.grpc_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver.admin_port}"

    def close(self) -> None:
        self.call(self.receiver.stop(self.pipeline.shutdown))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def crash(self) -> None:
        """Gone without a stop, as after SIGKILL: no drain, no delivered mark."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        journal = self.receiver.journal
        if journal is not None:
            journal.close()


def local_settings(tmp_path: Path | None = None, **kw: Any) -> ReceiverSettings:
    """The receiver's settings from the real defaults, on free loopback ports;
    ``kw`` replaces fields."""
    base = ReceiverSettings.from_config(Config.load(env={}))
    local: dict[str, Any] = dict(
        bind="127.0.0.1",
        http_port=0,
        grpc_port=0,
        admin_port=0,
        retry_after_s=0.2,
        shutdown_timeout_s=5.0,
        journal_path=(tmp_path / "journal.db") if tmp_path else None,
    )
    local.update(kw)
    return dataclasses.replace(base, **local)


@pytest.fixture
def sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def pipeline(sink: InMemorySink, tmp_path: Path) -> Pipeline:
    return make_pipeline(tmp_path / "data", [sink])


@pytest.fixture
def receiver(pipeline: Pipeline, tmp_path: Path) -> Iterator[RunningReceiver]:
    r = RunningReceiver(pipeline, local_settings(tmp_path))
    yield r
    r.close()


def close_live_channels() -> None:
    """Stop every live channel the agent helpers opened (one per
    TracerProvider, kept until exit) and shut down the log providers they
    own: otherwise their threads outlive the test, and an OTLP log
    exporter retrying against a stopped serve draws its jitter from the
    global ``random`` while a later test's hypothesis strategy runs."""
    from spanvisor.otel import live

    channels = [c for c in live._channels.values() if c is not None]
    live._channels.clear()  # a provider used again gets a channel anew
    for ch in channels:
        ch.close()
        ch._thread.join(5.0)
        owner = getattr(ch._flush, "__self__", None)
        if owner is not None:  # our own LoggerProvider, shut down at exit otherwise
            atexit.unregister(owner.shutdown)
            owner.shutdown()


@pytest.fixture(autouse=True)
def _no_live_channel_left() -> Iterator[None]:
    yield
    close_live_channels()
