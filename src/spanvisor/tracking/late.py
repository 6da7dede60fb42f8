"""The late-span rule: a span of a finished task is read into its state.

A span reaches the tracker after its task's ``TaskFinished`` in two ways,
and what decides between them is when it *ended*, never when it arrived:

* **It ended before (or as) its root ended, and arrived after it**
  (``arrived_late``): another replica held it, a Collector retried or
  reordered batches. It belongs to the task's story: the events it would
  have caused on time (checkpoints, tool and model calls, artifacts,
  warnings) are kept, each with the id, the time and the view it gets here,
  as the ``facts`` of one :class:`TaskCorrected`, and what it added to the
  totals is corrected. Sinks record the facts (the audit trail's rows,
  marked as arrived late) and announce the correction once.
* **It ended after its root** (async work that outlived the task): only
  its contribution to the totals counts, as one ``TaskCorrected``; its own
  events are not said, and one that changes no total causes nothing.

Either way the task is never reopened: ``TaskFinished`` stays the last
task-state event, and its view keeps its status, outcome, progress, context
occupancy and errors; only the totals (:data:`CORRECTED`) move. A fact's
view is the finished task's with that fact read in, and the correction's
``seq`` (its time is its own: no history of earlier views is kept).

Ids derive from the task and the late span (a fact's is the id the event
would have had on time), so a replay, or another replica's copy of the same
event, is deduplicated like any other.
"""

from __future__ import annotations

from dataclasses import replace

from spanvisor.events import Event, TaskCorrected, TaskEvent
from spanvisor.spans.data import SpanData
from spanvisor.tracking.taskstate import TaskState

CORRECTED = ("input_tokens", "output_tokens", "cost_usd", "unpriced_calls", "artifacts")


def arrived_late(st: TaskState, span: SpanData) -> bool:
    """The span ended within its finished task (before or as its root ended)."""
    end = st.working.ended_ns
    return span.end_ns is not None and end is not None and span.end_ns <= end


def correct(st: TaskState, span: SpanData, notes: list[str]) -> list[Event]:
    """Read a span of a finished task into it: a TaskCorrected, or nothing."""
    before, last, nano = st.view, st.last_ns, st.cost_nano
    within = arrived_late(st, span)
    if within:
        st.last_ns = 0  # its facts keep their own times
    caused = st.absorb(span, notes, is_root=False)
    facts: tuple[TaskEvent, ...] = tuple(caused) if within else ()
    w = st.working
    changed = {f: w[f] for f in CORRECTED if w[f] != getattr(before, f)}
    # Back to the finished view, then only the totals moved forward.
    st.restore(before)
    st.last_ns = last
    if not changed and not facts:
        return []
    st.update(**changed)
    t = st.next_time(max(span.end_ns or last, last))
    v = st.view
    added = tuple(a for a in v.artifacts if a not in before.artifacts)
    # The facts leave inside this one event: their views carry its seq, so
    # none is ever taken for a newer view than the correction's.
    facts = tuple(replace(f, task=replace(f.task, seq=v.seq)) for f in facts)
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
            arrived_late=within,
            facts=facts,
        )
    ]


__all__ = ["CORRECTED", "arrived_late", "correct"]
