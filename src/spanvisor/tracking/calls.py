"""What a model call does to its task: tokens, occupancy and cost, and the
events that say so (the concern of model calls and occupancy).

A call that ends with token usage gives a ``Checkpoint(source="model_call")``
naming the call's own model, operation, tokens and cost (a tool that ends
gives a ``Checkpoint(source="tool_call")``); then a
``ContextWarning`` per level the fullest conversation crossed and a
``ContextForecast`` when it is about to cross the next one. The budgets its
cost crosses are :mod:`.taskbudget`'s: :func:`model_call` returns the call's
price for it.
"""

from __future__ import annotations

from typing import Any

from spanvisor.events import ContextForecast, ContextWarning, Event
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData
from spanvisor.tracking.record import TaskRecord
from spanvisor.tracking.views import build_checkpoint

# A model call's events, and its price in dollars (None: unpriced, or no call).
CallEvents = tuple[list[Event], float | None]
_NO_CALL: CallEvents = ([], None)
_NO_CHANGES: dict[str, Any] = {}  # read only


def model_call(state: TaskRecord, span: SpanData, notes: list[str]) -> CallEvents:
    """The events a model call that ended causes, and its price (for the
    budgets); no event for a call that reports no token usage."""
    a = span.attributes
    raw_in, raw_out = cv.usage(a)
    t_in = sz.tokens(raw_in, "input_tokens", notes)
    t_out = sz.tokens(raw_out, "output_tokens", notes)
    if t_in is None and t_out is None:
        return _NO_CALL
    w = state.working
    end = span.end_ns or 0
    model = sz.name(cv.model_name(a), "model", notes)
    cost = state.settings.pricer.price(a, model, t_in or 0, t_out or 0, end)
    # Summed in whole nano-dollars, so every arrival order gives the same total.
    state.cost_nano += round((cost.usd or 0.0) * 1e9)
    w.input_tokens += t_in or 0
    w.output_tokens += t_out or 0
    w.cost_usd = state.cost_nano / 1e9
    if cost.usd is None:
        w.unpriced_calls += 1
    # Occupancy is the latest call's prompt plus its output, per conversation
    # (latest: started last, see tracking/occupancy.py).
    ids, times = (span.span_id, span.parent_id), (span.start_ns, end)
    state.context.model_call(w, a, ids, (t_in or 0) + (t_out or 0), model, times)
    if not state.finished:
        w.status = state.fields.status_after(w, _NO_CHANGES)
    t = state.next_time(end)
    # The call's own model, tokens and cost: the view shows the fullest
    # conversation's model, which an embeddings call does not change. Keys
    # in this order, those with no value left out.
    attributes: dict[str, object] = {} if model is None else {"model": model}
    operation = sz.name(a.get(cv.GEN_AI_OPERATION), cv.GEN_AI_OPERATION, notes)
    if operation is not None:
        attributes["operation"] = operation
    attributes["input_tokens"] = t_in or 0
    attributes["output_tokens"] = t_out or 0
    if cost.usd is not None:
        attributes["cost_usd"] = cost.usd
    attributes["cost_source"] = cost.source
    cp = build_checkpoint(
        state.event_id("model", span.span_id), t, state.view, tuple(notes), "model_call", ("tokens",), attributes
    )
    out: list[Event] = [cp, *context_warnings(state, t, notes)]
    out.extend(_forecast(state, span.span_id, t, notes))
    return out, cost.usd


def tool_call(state: TaskRecord, span: SpanData, notes: list[str]) -> list[Event]:
    """A tool that ended: a ``Checkpoint(source="tool_call")`` naming it, how
    long it ran and, when it failed, why. It changes no field of the task."""
    end = span.end_ns or 0
    attributes: dict[str, object] = {
        "tool": sz.name(cv.tool_name(span.attributes, span.name), "tool.name", notes) or "tool",
        "duration_s": round(max(0, end - span.start_ns) / 1e9, 3),
    }
    if span.error:
        failure = next((e.attributes for e in span.events if e.name == cv.EVENT_EXCEPTION), None)
        raw = (failure or {}).get("exception.message") or span.status_message or "error"
        attributes["error"] = sz.text(raw, "tool.error", notes, 500) or "error"
    t = state.next_time(end)
    return [
        build_checkpoint(state.event_id("tool", span.span_id), t, state.view, tuple(notes), "tool_call", (), attributes)
    ]


def context_warnings(state: TaskRecord, now: int, notes: list[str]) -> list[Event]:
    w = state.working
    tokens, limit = w.context_tokens, w.context_limit
    if tokens is None or not limit:
        return []  # no occupancy known: no level to cross
    out: list[Event] = []
    for level, n, ratio in state.context.crossed(tokens, limit):
        t = state.next_time(now)
        out.append(
            ContextWarning(
                event_id=state.event_id("context", level, n),
                time_ns=t,
                task=state.view,
                notes=tuple(notes),
                level="critical" if state.context.level_name(level) == "critical" else "warning",
                threshold=level,
                ratio=ratio,
                tokens=tokens,
                limit=limit,
            )
        )
    return out


def _forecast(state: TaskRecord, span_id: str, now: int, notes: list[str]) -> list[Event]:
    found = state.context.forecast()
    if found is None:
        return []
    level, n_calls, eta_s, tokens, limit = found
    t = state.next_time(now)
    return [
        ContextForecast(
            event_id=state.event_id("forecast", level, span_id),
            time_ns=t,
            task=state.view,
            notes=tuple(notes),
            threshold=level,
            ratio=tokens / limit,
            tokens=tokens,
            limit=limit,
            calls=n_calls,
            eta_s=eta_s,
        )
    ]


__all__ = ["context_warnings", "model_call", "tool_call"]
