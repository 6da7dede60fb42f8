"""Fixtures of the core's tests: a real TracerProvider with the processor
(``agent``) recording into an ``InMemorySink`` (``memory``); ``live``, the
same with its pipeline started and serving this process's Control (what an
agent reads its decisions from)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.config import Config
from spanvisor.control import hub
from spanvisor.testing import InMemorySink
from tests.waiting import wait_until

from ._sdk import Agent


@pytest.fixture
def memory() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def agent(memory: InMemorySink) -> Iterator[Agent]:
    a = Agent([memory])
    yield a
    a.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Agent, InMemorySink]]:
    memory = InMemorySink()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}, extra=()).with_values(shutdown_timeout_s=2.0)
    a = Agent([memory], config)
    assert a.processor.pipeline.wait_ready(30)
    # The agents read this process's Control: the first pipeline started.
    assert hub.current() is a.processor.pipeline.control, "a pipeline another test started is still running"
    yield a, memory
    # A finished task's cancel watcher ends after its current poll of this
    # pipeline; with the pipeline gone first, that poll waits out its timeout.
    try:
        wait_until(
            lambda: not any(t.name.startswith("spanvisor-cancel-") for t in threading.enumerate()),
            30,
            "the tasks' cancel watchers to end",
        )
    finally:
        a.close()
