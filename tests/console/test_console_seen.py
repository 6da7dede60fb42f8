"""The console skips an event it printed already (a replay), remembering the
newest ``SEEN_MAX`` events: an older one is printed again."""

from __future__ import annotations

import pytest

from spanvisor.events import TaskStarted, TaskView, stable_id
from spanvisor_console import ConsoleSink
from spanvisor_console import sink as console_sink


def _started(n: int) -> TaskStarted:
    v = TaskView(f"t{n}", "ab" * 16, "cd" * 8, "agent", task_name=f"task {n}")
    return TaskStarted(event_id=stable_id("start", n), time_ns=1, task=v)


def test_a_replayed_event_is_skipped_within_the_bound_and_printed_past_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_sink, "SEEN_MAX", 3)
    sink = ConsoleSink(interval_s=3600)
    first = [_started(n) for n in range(3)]
    assert sink._cards(first)
    assert sink._cards(first) == []  # all three replayed: nothing printed
    assert sink._cards([_started(3)])  # the oldest, t0, is forgotten
    assert sink._cards(first[1:]) == []
    assert sink._cards(first[:1])  # printed again
