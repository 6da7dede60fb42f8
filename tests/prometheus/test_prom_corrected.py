"""A correction after a task's end (TaskCorrected, the late-span rule) is
counted once: its added tokens and cost, never the whole total again, and
nothing on a replay."""

from __future__ import annotations

import pytest
from prom_streams import feed, started_sink, val
from tests.core._late import late_call_events

from spanvisor.events import Checkpoint, TaskCorrected, TaskFinished


def test_a_correction_adds_its_tokens_and_cost_once() -> None:
    events = late_call_events()
    assert [e.kind for e in events] == ["TaskStarted", "Checkpoint", "TaskFinished", "TaskCorrected"]
    call, finished, corrected = events[1], events[2], events[3]
    assert isinstance(call, Checkpoint) and isinstance(finished, TaskFinished)
    assert isinstance(corrected, TaskCorrected)
    sink, registry = started_sink()
    feed(sink, events)
    feed(sink, events)  # a replay adds nothing

    def tokens(direction: str) -> float | None:
        return val(registry, "spanvisor_tokens_total", agent="rivet", direction=direction)

    assert (tokens("input"), tokens("output")) == (6_000, 110)
    cost = val(registry, "spanvisor_cost_usd_total", agent="rivet", model="gpt-4o")
    assert cost == pytest.approx(corrected.task.cost_usd) and cost > finished.task.cost_usd
    assert val(registry, "spanvisor_tasks_finished_total", agent="rivet", repo="", outcome="complete") == 1
    assert sink.metrics.rejected_values == 0
