"""Events of one task id run twice (two roots: an orchestrator's retry), for
the sinks' per-run tests."""

from __future__ import annotations

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData
from spanvisor.tracking.tracker import TaskTracker


def two_runs(calls: bool = False) -> list[Event]:
    """``job-42`` fails, then its rerun completes; with ``calls`` each run
    makes one model call of 1,000 input tokens first."""
    tracker = TaskTracker()
    out: list[Event] = []
    root_id = "1" * 16
    for n, (trace, error) in enumerate((("a" * 32, True), ("b" * 32, False))):
        start = 1_760_000_000_000_000_000 + 1_000_000_000 * n  # November 2025
        if calls:
            stamp = {cv.TASK_ID: "job-42", cv.TASK_ROOT: root_id, cv.AGENT_ID: "importer"}
            call = {**stamp, cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
            call |= {cv.GEN_AI_INPUT: 1_000, cv.GEN_AI_OUTPUT: 10}
            out += tracker.span_ended(SpanData(trace, "2" * 16, root_id, "chat gpt-4o", start + 1, start + 2, call))
        attrs = {cv.TASK_ID: "job-42", cv.TASK_NAME: f"Nightly import (attempt {n + 1})", cv.AGENT_ID: "importer"}
        out += tracker.span_ended(
            SpanData(trace, root_id, None, "import", start, start + 500_000_000, attrs, error=error)
        )
    return out
