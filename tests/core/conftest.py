"""Fixtures of the core's tests: a real TracerProvider with the processor
(``agent``) recording into an ``InMemorySink`` (``memory``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
