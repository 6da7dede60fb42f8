"""A task whose model call ends after its root, through the real tracker:
the events every sink test of the late-span rule starts from."""

from __future__ import annotations

from spanvisor.events import Event
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanEventData
from spanvisor.tracking.tracker import TaskTracker

from ._trees import FakeClock, SpanSpec, stamp_trees

TRACE = "5a" * 16
ROOT = "00000000000000a1"
T0 = 1_763_812_800_000_000_000  # 2025-11-22 12:00 UTC
MS = 1_000_000


def late_call_specs(task_id: str = "T-late", late_input: int = 5_000, artifact: bool = False) -> list[SpanSpec]:
    """A root (agent rivet), a call that ends in time (1,000 in, 100 out) and
    one that ends after the root (``late_input`` in, 10 out; with
    ``artifact``, an artifact event on it too)."""
    root = SpanSpec(TRACE, ROOT, None, "Diagnose F47", T0, T0 + 1_000 * MS)
    root.start_attrs = {cv.TASK_NAME: "Diagnose F47", cv.TASK_ID: task_id, cv.AGENT_ID: "rivet"}
    chat = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
    first = SpanSpec(TRACE, "00000000000000b1", ROOT, "chat", T0 + 100 * MS, T0 + 500 * MS, dict(chat))
    first.updates = [(first.end_ns, {cv.GEN_AI_INPUT: 1_000, cv.GEN_AI_OUTPUT: 100})]
    late = SpanSpec(TRACE, "00000000000000b2", ROOT, "chat", T0 + 600 * MS, T0 + 3_000 * MS, dict(chat))
    late.updates = [(late.end_ns, {cv.GEN_AI_INPUT: late_input, cv.GEN_AI_OUTPUT: 10})]
    if artifact:
        late.events = [SpanEventData(cv.EVENT_ARTIFACT, late.end_ns - 1, {cv.ARTIFACT_NAME: "report.pdf"})]
    specs = [root, first, late]
    stamp_trees(specs)
    return specs


def late_call_events(task_id: str = "T-late", late_input: int = 5_000, artifact: bool = False) -> list[Event]:
    """TaskStarted, the first call's checkpoint, TaskFinished, TaskCorrected."""
    root, first, late = late_call_specs(task_id, late_input, artifact)
    tracker = TaskTracker(clock=FakeClock())
    return [e for s in (first, root, late) for e in tracker.span_ended(s.data(None, stamped=True))]
