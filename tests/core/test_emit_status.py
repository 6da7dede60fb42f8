"""`spanvisor emit start` leaves the status to the tracker: starting, then working.

The regression: ``emit start`` used to send ``agent.status=starting`` explicitly, and
an explicit status sticks, so the task read "starting · 40 %" until
``finish``. Each call goes through the real OTLP HTTP exporter to a real
receiver in front of a real pipeline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli import emit, emit_spans
from spanvisor.config import Config
from spanvisor.events import Checkpoint, TaskFinished, TaskStarted
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink


class _Served:
    """A pipeline behind a receiver on a private event loop thread."""

    def __init__(self, tmp_path: Path) -> None:
        config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)})
        self.sink = InMemorySink()
        self.pipeline = Pipeline(config=config, sinks=[self.sink], path="receiver").start()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = dataclasses.replace(
            ReceiverSettings.from_config(config),
            bind="127.0.0.1",
            http_port=0,
            grpc_port=0,
            admin_port=0,
            shutdown_timeout_s=3.0,
            journal_path=tmp_path / "journal.db",
        )
        self.receiver = Receiver(self.pipeline, settings)
        self._call(self.receiver.start())

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.receiver.http_port}"

    def close(self) -> None:
        self._call(self.receiver.stop(self.pipeline.shutdown))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Served]:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    s = _Served(tmp_path)
    yield s
    s.close()


def _emit(served: _Served, kind: str, *extra: str) -> None:
    argv = ["emit", kind, "--task", "deploy-7", "--agent", "shellbot", "--endpoint", served.endpoint, *extra]
    assert emit.main(argv) == 0


def test_start_sets_no_explicit_status() -> None:
    import argparse

    args = argparse.Namespace(kind="start", task="t", agent="a", name="T", repo=None, message=None, agent_name=None)
    (span,) = emit_spans.build_spans(args, Config.load(env={}, extra=[]), now_ns=10**18)
    assert cv.STATUS not in (span.attributes or {})


def test_status_is_inferred_after_emit_start(served: _Served) -> None:
    _emit(served, "start", "--name", "Deploy 7")
    assert served.pipeline.force_flush(10)
    started = served.sink.of_type(TaskStarted)
    assert [e.task.status for e in started] == ["starting"]

    _emit(served, "checkpoint", "--progress", "40", "Validating")
    assert served.pipeline.force_flush(10)
    (cp,) = served.sink.of_type(Checkpoint)
    # Before the fix: status "starting" at 40 %, until the task finished.
    assert (cp.task.status, cp.task.progress) == ("working", 40)

    _emit(served, "checkpoint", "--status", "waiting", "On the queue")
    _emit(served, "finish", "--status", "complete")
    assert served.pipeline.force_flush(10)
    statuses = [e.task.status for e in served.sink.events if e.task.task_id == "deploy-7"]
    assert statuses == ["starting", "working", "waiting", "complete"]
    assert len(served.sink.of_type(TaskFinished)) == 1
