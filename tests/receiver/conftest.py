"""Receiver test helpers: a stand-in pipeline and a receiver on its own thread.

The stand-in honours the pipeline contract the receiver relies on
(``submit_spans`` is all-or-nothing and never blocks, ``inbox_free``,
``ready``, ``stats``, ``shared``); a test stalls it by shrinking its room.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.spans import SpanData
from spanvisor.stats import PipelineStats


class StubPipeline:
    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self.spans: list[SpanData] = []
        self.stats = PipelineStats()
        self.shared: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.is_ready = (True, "stub ready")

    def submit_spans(self, spans: Any) -> bool:
        with self.lock:
            if len(spans) > self.capacity:
                return False
            self.capacity -= len(spans)
            self.spans.extend(spans)
            return True

    def inbox_free(self) -> int:
        return self.capacity

    def ready(self) -> tuple[bool, str]:
        return self.is_ready

    def force_flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        return None


class RunningReceiver:
    """A Receiver on a private event loop thread, for sync OTel exporters."""

    def __init__(self, pipeline: Any, settings: ReceiverSettings) -> None:
        self.pipeline = pipeline
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(pipeline, settings)
        self.call(self.receiver.start())

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


def local_settings(tmp_path: Path | None = None, **kw: Any) -> ReceiverSettings:
    base: dict[str, Any] = dict(
        bind="127.0.0.1",
        http_port=0,
        grpc_port=0,
        admin_port=0,
        retry_after_s=0.2,
        shutdown_timeout_s=3.0,
        journal_path=(tmp_path / "journal.db") if tmp_path else None,
    )
    base.update(kw)
    return ReceiverSettings(**base)


@pytest.fixture
def stub() -> StubPipeline:
    return StubPipeline()


@pytest.fixture
def receiver(stub: StubPipeline, tmp_path: Path) -> Iterator[RunningReceiver]:
    r = RunningReceiver(stub, local_settings(tmp_path))
    yield r
    r.close()
