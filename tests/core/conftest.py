"""Fixtures of the core's tests: a real TracerProvider with the processor
(``agent``) recording into an ``InMemorySink`` (``memory``); ``live``, the
same with its pipeline started and serving this process's Control (what an
agent reads its decisions from)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.config import Config
from spanvisor.control import hub
from spanvisor.testing import InMemorySink

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
    a.close()
