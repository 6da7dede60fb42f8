"""The late-span rule: a span of a finished task corrects its totals.

Work can outlive its task's root (an async model call, an upload left
running). Such a span reaches the tracker after the task's ``TaskFinished``
on every path: in-process the processor hands it over at its end, and the
end-order paths get it after the root, or find it ended after the root when
they replay a held root's subtree. Within :data:`~.edges.LATE_WINDOW_S` it
is read into the finished task's state (:class:`~.edges.ClosedTasks`), and
what it changed of the task's totals leaves as one :class:`TaskCorrected`:

* the corrected fields are the totals only (:data:`CORRECTED`): tokens,
  cost, unpriced calls, artifacts. Everything else (status, outcome,
  progress, context occupancy, errors) stays as the task finished: the
  task is over, and a late span cannot reopen or restate it;
* the span's own events (its model-call checkpoint, warnings, artifacts)
  are not said: after ``TaskFinished`` only ``TaskCorrected`` follows;
* a span that changes no total causes nothing (it is counted in
  ``late_spans_total`` all the same).

The event id derives from the task and the late span, so a replay gives the
same correction and a resent span is deduplicated like any other.
"""

from __future__ import annotations

from spanvisor.events import Event, TaskCorrected
from spanvisor.spans.data import SpanData
from spanvisor.tracking.taskstate import TaskState

CORRECTED = ("input_tokens", "output_tokens", "cost_usd", "unpriced_calls", "artifacts")


def correct(st: TaskState, span: SpanData, notes: list[str]) -> list[Event]:
    """Read a late span into a finished task: a TaskCorrected, or nothing."""
    before, last, nano = st.view, st.last_ns, st.cost_nano
    st.absorb(span, notes, is_root=False)  # its own events are not said
    w = st.working
    changed = {f: w[f] for f in CORRECTED if w[f] != getattr(before, f)}
    # Back to the finished view, then only the totals moved forward.
    st.restore(before)
    st.last_ns = last
    if not changed:
        return []
    st.update(**changed)
    t = st.next_time(span.end_ns or last)
    v = st.view
    added = tuple(a for a in v.artifacts if a not in before.artifacts)
    return [
        TaskCorrected(
            event_id=st.event_id("corrected", span.span_id),
            time_ns=t,
            task=v,
            notes=tuple(notes),
            span_id=span.span_id,
            added_input_tokens=v.input_tokens - before.input_tokens,
            added_output_tokens=v.output_tokens - before.output_tokens,
            added_cost_usd=(st.cost_nano - nano) / 1e9,
            added_unpriced_calls=v.unpriced_calls - before.unpriced_calls,
            added_artifacts=added,
        )
    ]


__all__ = ["CORRECTED", "correct"]
