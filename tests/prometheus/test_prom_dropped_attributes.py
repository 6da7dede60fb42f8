"""The attributes a sender's limit dropped are a self-metric of the Prometheus sink."""

from __future__ import annotations

from prom_streams import started_sink, val

from spanvisor.spans.data import SpanData
from spanvisor.tracking.tracker import TaskTracker


def test_dropped_attributes_are_exposed() -> None:
    sink, reg = started_sink()
    stats = sink.ctx.stats  # type: ignore[union-attr]
    tracker = TaskTracker(stats=stats)
    root = SpanData(f"{1:032x}", f"{1:016x}", None, "run", 1, 2, {"agent.result.r9": 9}, dropped_attributes=4)
    tracker.span_ended(root)
    assert val(reg, "spanvisor_span_attributes_dropped_total") == 4
