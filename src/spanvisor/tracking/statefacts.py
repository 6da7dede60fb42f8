"""A task's state fields as spans state them: progress, step, steps,
message, status and the agent's own context figures (the concern of fields
and precedence).

Read from the root's attributes (defaults), a child's attributes at its end
and ``agent.checkpoint`` span events (timed facts); which value wins is
:mod:`.fields`'s rule. A change gives a ``Checkpoint(source="state")`` (a
checkpoint event a ``Checkpoint(source="event")`` even when nothing
changed), then the context warnings a changed occupancy crosses.
"""

from __future__ import annotations

from typing import Any

from spanvisor.events import Checkpoint, Event, stable_id
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData
from spanvisor.tracking.calls import context_warnings
from spanvisor.tracking.fields import FactTime
from spanvisor.tracking.record import TaskRecord
from spanvisor.tracking.views import build_checkpoint

# Keys of an agent.checkpoint event that are state, not extras.
_EVENT_META = (cv.PROGRESS, cv.STEP, cv.STEPS, cv.MESSAGE, cv.STATUS, "message")


def read(
    state: TaskRecord, src: Any, notes: list[str], timed: FactTime | None, plain_message: bool = False
) -> tuple[str, ...]:
    """Apply the state fields ``src`` carries (see :mod:`.fields`); the fields that changed."""
    if not src:
        return ()  # most spans carry no state: no change, not even of status
    w = state.working
    changes = state.fields.changes(w, src, notes, timed, plain_message)
    status = state.fields.status_after(w, changes)
    if status != w.status and not state.finished:
        changes["status"] = status
    if changes:
        state.apply(changes)
    return tuple(changes)


def read_initial(state: TaskRecord, span: SpanData, notes: list[str]) -> None:
    """The root's state attributes as the task opens (part of TaskStarted)."""
    read(state, state.fields.attr_changes(span.span_id, span.attributes), notes, None)


def attributes(state: TaskRecord, span: SpanData, timed: FactTime | None, now: int, notes: list[str]) -> list[Event]:
    """The state attributes of ``span`` (the root's as defaults, ``timed``
    None; a child's as a fact at its end) and the events their change causes."""
    if state.fields.carries_none(span.span_id, span.attributes):
        return []  # a model call, say: no state attribute, nothing changed
    changed = read(state, state.fields.attr_changes(span.span_id, span.attributes), notes, timed)
    if not changed or state.finished:
        return []
    out: list[Event] = [_state_checkpoint(state, span.span_id, changed, now, notes)]
    if "context_tokens" in changed or "context_limit" in changed:
        out.extend(context_warnings(state, now, notes))
    return out


def checkpoint_event(
    state: TaskRecord, span_id: str, index: int, time_ns: int, attrs: Any, notes: list[str]
) -> list[Event]:
    """An ``agent.checkpoint`` span event: a Checkpoint(source="event")
    carrying its extra attributes, then the context warnings it crossed."""
    changed = read(state, attrs, notes, (time_ns, span_id, index), plain_message=True)
    extras = {k: sz.jsonable(x, k, notes) for k, x in list(attrs.items())[:50] if k not in _EVENT_META}
    t = state.next_time(time_ns)
    event_id = state.event_id("event", span_id, time_ns, index)
    cp = build_checkpoint(event_id, t, state.view, tuple(notes), "event", changed, extras)
    if "context_tokens" in changed or "context_limit" in changed:
        return [cp, *context_warnings(state, t, notes)]
    return [cp]


def _state_checkpoint(
    state: TaskRecord, span_id: str, changed: tuple[str, ...], now: int, notes: list[str]
) -> Checkpoint:
    w = state.working
    key = stable_id(w.status, w.progress, w.step, w.steps, w.message, w.context_tokens, w.context_limit)
    n = state.state_seen.get(key, 0) + 1
    state.state_seen[key] = n
    t = state.next_time(now)
    return build_checkpoint(state.event_id("state", span_id, key, n), t, state.view, tuple(notes), "state", changed, {})


__all__ = ["attributes", "checkpoint_event", "read", "read_initial"]
