"""The live channel: what an agent says of its task while the root is open.

OTLP carries a span only once it has ended, so behind a Collector the
task's own state (its name, progress, checkpoints) would arrive with the
root's end. Agents in any language therefore also emit OpenTelemetry **log
records** named by ``event.name`` (``LogRecord.event_name``; older senders
put it in the ``event.name`` attribute), inside the root span's context so
that each record carries the task's trace and root span ids
(docs/reference/conventions.md#the-live-channel):

* ``agent.task.start``: the root's attributes as it starts (at the root's
  start time);
* ``agent.task.update``: root attributes the agent set since (status,
  progress, results, context, ...);
* ``agent.checkpoint``, ``agent.artifact``, ``agent.approval.request``,
  ``agent.approval.decision``: the span events the agent adds to its root,
  with the same time and attributes;
* ``agent.task.heartbeat``: a sign of life, while nothing else is said.

A record whose span is not the root (a checkpoint from deep helper code)
names the root with ``agent.task.root_span_id``, as a stamped span does.
Everything a record says is also on the root span, so the root's end stays
the last word: :mod:`spanvisor.tracking.live` makes each record a reading of
the open root, and a fact read both ways is one fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spanvisor.spans import conventions as cv

# A sender's id for one record (the coding-agent gate's notes, which may be
# sent again from a spool): a record whose id its task already read is read
# once, so a resent record is never a second event.
RECORD_ID = "agent.record.id"


@dataclass(frozen=True, slots=True)
class LiveFact:
    """One live-channel record: a fact about the open root of a task."""

    trace_id: str  # 32 lower-case hex digits
    root_span_id: str  # 16 lower-case hex digits: the task root's span id
    name: str  # one of conventions.LIVE_EVENTS
    time_ns: int
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any] = field(default_factory=dict)
    # When the receiver heard it (wall clock, ns; 0: just now): a sign of
    # life's own time, so one replayed after a restart is not news.
    heard_ns: int = 0


def root_of(span_hex: str, attributes: Mapping[str, Any]) -> str | None:
    """The task root's span id of a record emitted in span ``span_hex``:
    its ``agent.task.root_span_id`` when it names one, else that span."""
    stamped = attributes.get(cv.TASK_ROOT)
    if isinstance(stamped, str) and len(stamped) == 16:
        try:
            int(stamped, 16)
        except ValueError:
            return None
        return stamped.lower()
    return span_hex or None


__all__ = ["LiveFact", "root_of"]
