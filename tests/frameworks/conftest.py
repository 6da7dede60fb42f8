"""Every framework test leaves the calling thread's context as it found it:
a span left current (smolagents leaves its failed run's) would parent every
later test's spans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace


@pytest.fixture(autouse=True)
def no_span_left_current() -> Iterator[None]:
    yield
    leaked = trace.get_current_span()
    assert not leaked.get_span_context().is_valid, f"a span was left current: {leaked}"
