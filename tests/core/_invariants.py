"""Invariants every event stream from the TaskTracker must satisfy."""

from __future__ import annotations

import math
from collections.abc import Sequence

from spanvisor import conventions as cv
from spanvisor import sanitize as sz
from spanvisor.events import ContextWarning, Event, TaskFinished, TaskStarted, TaskView

from ._trees import SpanSpec, by_task

DEFAULT_THRESHOLDS = (0.70, 0.85)


def _safe_text(s: str | None, limit: int, what: str) -> None:
    if s is None:
        return
    s.encode("utf-8")  # no lone surrogates survive
    assert "\x00" not in s, what
    assert len(s) <= limit, (what, len(s))


def check_view(v: TaskView) -> None:
    assert v.progress is None or (math.isfinite(v.progress) and 0 <= v.progress <= 100), v.progress
    assert v.status in cv.STATUSES
    assert v.input_tokens >= 0 and v.output_tokens >= 0
    assert v.context_tokens is None or 0 <= v.context_tokens <= 2 * sz.MAX_TOKENS
    assert v.context_limit is None or v.context_limit > 0
    _safe_text(v.message, sz.MAX_TEXT, "message")
    _safe_text(v.step, sz.MAX_NAME, "step")
    _safe_text(v.agent_id, sz.MAX_NAME, "agent_id")
    _safe_text(v.agent_name, sz.MAX_NAME, "agent_name")
    _safe_text(v.task_id, sz.MAX_NAME + 64, "task_id")
    _safe_text(v.task_name, 500, "task_name")
    _safe_text(v.repo, sz.MAX_NAME, "repo")
    assert len(v.steps) <= sz.MAX_LIST
    for s in v.steps:
        _safe_text(s, sz.MAX_NAME, "steps")
    assert len(v.artifacts) <= sz.MAX_LIST
    for a in v.artifacts:
        _safe_text(a.name, 3000, "artifact.name")
        _safe_text(a.uri, 3000, "artifact.uri")


def check_stream(events: Sequence[Event], thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> None:
    """Unique ids; per task: TaskStarted first and once, TaskFinished last and
    at most once; every view sane; every threshold fires at most once per
    crossing (it re-arms only after an event shows usage below it)."""
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "event ids are not unique within a run"
    for task_id, evs in by_task(events).items():
        assert isinstance(evs[0], TaskStarted), (task_id, [e.kind for e in evs])
        assert sum(isinstance(e, TaskStarted) for e in evs) == 1, task_id
        finished = [i for i, e in enumerate(evs) if isinstance(e, TaskFinished)]
        assert len(finished) <= 1, task_id
        if finished:
            assert finished[0] == len(evs) - 1, "events after TaskFinished"
        armed = dict.fromkeys(thresholds, True)
        for e in evs:
            check_view(e.task)
            assert len(e.notes) <= sz.MAX_NOTES
            for n in e.notes:
                n.encode("utf-8")
            ratio = e.task.context_ratio
            if isinstance(e, ContextWarning):
                assert e.threshold in armed
                assert armed[e.threshold], f"{e.threshold} fired twice without falling below it"
                assert e.ratio >= e.threshold
                armed[e.threshold] = False
            elif ratio is not None:
                for t in thresholds:
                    if ratio < t:
                        armed[t] = True


def expected_roots(specs: Sequence[SpanSpec]) -> set[tuple[str, str]]:
    """(trace, span) of every task root: a root candidate with no candidate ancestor."""
    by_id = {s.span_id: s for s in specs}
    out = set()
    for s in specs:
        if not cv.is_root_candidate(s.start_attrs):
            continue
        p = by_id.get(s.parent_id) if s.parent_id else None
        nested = False
        while p is not None:
            if cv.is_root_candidate(p.start_attrs):
                nested = True
                break
            p = by_id.get(p.parent_id) if p.parent_id else None
        if not nested:
            out.add((s.trace_id, s.span_id))
    return out


def roots_of(events: Sequence[Event]) -> set[tuple[str, str]]:
    return {(e.task.trace_id, e.task.root_span_id) for e in events if isinstance(e, TaskStarted)}


def finished_roots(events: Sequence[Event]) -> list[tuple[str, str]]:
    return [(e.task.trace_id, e.task.root_span_id) for e in events if isinstance(e, TaskFinished)]
