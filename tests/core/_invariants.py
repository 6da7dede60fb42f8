"""Invariants every event stream from the TaskTracker must satisfy."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

from spanvisor.events import (
    ApprovalRequest,
    Checkpoint,
    ContextWarning,
    DiffUpdated,
    Event,
    HumanIntervention,
    TaskCorrected,
    TaskFinished,
    TaskStarted,
    TaskView,
    stable_id,
)
from spanvisor.redaction import redact
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.diffs import MAX_DIFF_CHARS
from spanvisor.tracking.occupancy import HYSTERESIS
from spanvisor.tracking.provisional import ProvisionalRule
from spanvisor.tracking.tracebuffer import TraceBuffer

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
    ids = [r.approval_id for r in v.approvals]
    assert len(ids) == len(set(ids)), ("an approval is open twice", ids)
    for r in v.approvals:
        _safe_text(r.approval_id, sz.MAX_NAME, "approval_id")
        _safe_text(r.question, 500, "question")
    if v.approvals and v.ended_ns is None:
        # An open request outranks a plain running status (tracking/fields.py).
        assert v.status not in ("starting", "working", "waiting", "context_warning"), (v.status, ids)


def check_stream(
    events: Sequence[Event], thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, all_finished: bool = False
) -> None:
    """The one stream checker every property test uses, on every path.

    Unique ids; per task: TaskStarted first and once, TaskFinished at most
    once (exactly once with ``all_finished``) and followed only by
    TaskCorrected (the late-span rule); event times never go back
    and ``seq`` counts 1, 2, 3…; token totals and ``updated_ns`` never
    decrease; every view sane; every level fires once per crossing and
    re-arms only after a view shows the ratio ``HYSTERESIS`` below it."""
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "event ids are not unique within a run"
    # A decision on a task not open here carries a view that is not the
    # task's next one (known=False): sinks leave the task alone, and so does
    # the stream of the task.
    events = [e for e in events if not (isinstance(e, HumanIntervention) and not e.known)]
    for task_id, evs in by_task(events).items():
        closed: set[str] = set()
        for a, b in itertools.pairwise(evs):
            # A request once closed (answered, noted or timed out) never reopens.
            closed |= {r.approval_id for r in a.task.approvals} - {r.approval_id for r in b.task.approvals}
            reopened = closed & {r.approval_id for r in b.task.approvals}
            assert not reopened, (task_id, "approval reopened", reopened)
        kinds = [e.kind for e in evs]
        # Renamed at most once, by its root, for good: the id it was shown under, then the root's.
        ids = [e.task_id for e in evs]
        renamed = next((i for i, e in enumerate(evs) if e.task.former_id is not None), len(evs))
        assert len(set(ids[:renamed])) <= 1 and len(set(ids[renamed:])) <= 1, (task_id, "renamed twice", ids)
        assert all(e.task.former_id == evs[0].task_id for e in evs[renamed:]), (task_id, "former id", ids)
        assert isinstance(evs[0], TaskStarted), (task_id, kinds)
        assert sum(isinstance(e, TaskStarted) for e in evs) == 1, task_id
        finished = [i for i, e in enumerate(evs) if isinstance(e, TaskFinished)]
        assert len(finished) <= 1, task_id
        before_end = evs[: finished[0]] if finished else evs
        assert not any(isinstance(e, TaskCorrected) for e in before_end), ("a correction before the end", kinds)
        if finished:
            _check_corrections(task_id, evs[finished[0] :])
        elif all_finished:
            raise AssertionError(f"task {task_id} never finished: {kinds}")
        assert [e.task.seq for e in evs] == list(range(1, len(evs) + 1)), (task_id, [e.task.seq for e in evs])
        for a, b in itertools.pairwise(evs):
            assert b.time_ns >= a.time_ns, ("time went back", task_id, a.kind, b.kind, a.time_ns, b.time_ns)
            assert b.task.input_tokens >= a.task.input_tokens and b.task.output_tokens >= a.task.output_tokens
            assert b.task.updated_ns >= a.task.updated_ns, (task_id, a.kind, b.kind)
        _check_diffs(task_id, [e for e in evs if isinstance(e, DiffUpdated)])
        armed = dict.fromkeys(thresholds, True)
        for e in evs:
            check_view(e.task)
            assert len(e.notes) <= sz.MAX_NOTES
            for n in e.notes:
                n.encode("utf-8")
            ratio = e.task.context_ratio
            if isinstance(e, ContextWarning):
                assert e.threshold in armed
                assert armed[e.threshold], f"{e.threshold} fired twice without falling well below it"
                assert e.ratio >= e.threshold
                armed[e.threshold] = False
            elif ratio is not None:
                for t in thresholds:
                    if ratio < t - HYSTERESIS:
                        armed[t] = True


def _check_diffs(task_id: str, diffs: Sequence[DiffUpdated]) -> None:
    """A task's diffs: each redacted, within its bound, its digest its
    text's; the same diff said twice in a row is one event."""
    for d in diffs:
        assert redact(d.diff) == d.diff, (task_id, "a diff kept a secret")
        assert len(d.diff) <= MAX_DIFF_CHARS and d.files >= 0, task_id
        assert d.digest == hashlib.sha256(d.diff.encode("utf-8", "surrogatepass")).hexdigest(), task_id
    for a, b in itertools.pairwise(diffs):
        assert a.digest != b.digest, (task_id, "the same diff twice in a row")


def _check_corrections(task_id: str, tail: Sequence[Event]) -> None:
    """The late-span rule: after TaskFinished only TaskCorrected follows, each
    the finished view with totals that never decrease and nothing else moved."""
    end = tail[0]
    assert all(isinstance(e, TaskCorrected) for e in tail[1:]), ("events after TaskFinished", [e.kind for e in tail])
    for a, b in itertools.pairwise(tail):
        assert isinstance(b, TaskCorrected)
        assert b.task.seq > a.task.seq and b.task.cost_usd >= a.task.cost_usd - 1e-9, task_id
        assert b.task.unpriced_calls >= a.task.unpriced_calls and set(a.task.artifacts) <= set(b.task.artifacts)
        assert (b.task.status, b.task.ended_ns, b.task.progress) == (
            end.task.status,
            end.task.ended_ns,
            end.task.progress,
        )
        assert b.added_input_tokens == b.task.input_tokens - a.task.input_tokens, task_id
        assert b.added_output_tokens == b.task.output_tokens - a.task.output_tokens, task_id


def check_against_specs(events: Sequence[Event], specs: Sequence[SpanSpec]) -> None:
    """What each event shows is true as of its time, judged from the spans.

    * A model call that holds no conversation (embeddings) never changes the
      occupancy shown.
    * Progress and step shown by an event come from a timed fact no later than
      the event (a checkpoint event, a child's state attributes at its end) or
      from a root attribute (which carries no time): never from the future.
    """
    facts: dict[str, list[tuple[int, str, object]]] = {}
    for s in specs:
        for ev in s.events:
            if ev.name == cv.EVENT_CHECKPOINT:
                for key, field_name in ((cv.PROGRESS, "progress"), (cv.STEP, "step")):
                    if key in ev.attributes:
                        facts.setdefault(s.trace_id, []).append((ev.time_ns, field_name, ev.attributes[key]))
        attrs = s.attrs_at(s.end_ns, stamped=False)
        timeless = cv.is_root_candidate(s.start_attrs) or cv.is_root_candidate(attrs)
        for key, field_name in ((cv.PROGRESS, "progress"), (cv.STEP, "step")):
            values = [s.start_attrs.get(key)] + [u.get(key) for _, u in s.updates]
            for v in values:
                if v is not None:
                    facts.setdefault(s.trace_id, []).append((-1 if timeless else s.end_ns, field_name, v))
    side_calls = [
        s.span_id
        for s in specs
        if cv.is_model_call(a := s.attrs_at(s.end_ns, stamped=False)) and not cv.holds_conversation(a)
    ]
    for evs in by_task(events).values():
        trace_facts = facts.get(evs[0].task.trace_id, [])
        side_ids = {stable_id(evs[0].task_id, "model", sid) for sid in side_calls}
        for prev, e in itertools.pairwise(evs):
            if isinstance(e, Checkpoint) and e.source == "model_call" and e.event_id in side_ids:
                assert e.task.context_tokens == prev.task.context_tokens, "a side call changed occupancy"
        for e in evs:
            if isinstance(e, TaskFinished):
                continue
            for field_name, clean in (("progress", _progress), ("step", _step)):
                shown = getattr(e.task, field_name)
                if shown is None:
                    continue
                allowed = {clean(v) for t, f, v in trace_facts if f == field_name and t <= e.time_ns}
                assert shown in allowed, (field_name, shown, e.kind, e.time_ns, sorted(map(str, allowed)))


def _progress(v: object) -> object:
    return sz.progress(v, [])


def _step(v: object) -> object:
    return sz.name(v, cv.STEP, [])


FINAL_FIELDS = (
    "task_name",
    "agent_id",
    "agent_name",
    "repo",
    "branch",
    "pull_request",
    "status",
    "progress",
    "step",
    "steps",
    "message",
    "model",
    "context_tokens",
    "context_limit",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced_calls",
    "budget_usd",
    "budget_tokens",
    "approvals",
    "cancel_requested",
)


def final_states(events: Sequence[Event]) -> dict[str, dict[str, object]]:
    """Each finished task's final view, as the fields every path must agree on."""
    out: dict[str, dict[str, object]] = {}
    for e in events:
        if isinstance(e, TaskFinished | TaskCorrected):  # a correction's view is the newer final one
            state: dict[str, object] = {f: getattr(e.task, f) for f in FINAL_FIELDS}
            state["artifacts"] = sorted(e.task.artifacts, key=repr)  # arrival order may differ
            if isinstance(e, TaskFinished):
                state["outcome"] = e.outcome
                state["error"] = (e.error_type, e.error_message)
            elif e.task_id in out:
                state["outcome"], state["error"] = out[e.task_id]["outcome"], out[e.task_id]["error"]
            out[e.task_id] = state
    # Every diff the task showed, whenever it came (the order spans end in
    # may differ by path: the newest shown may too, the set may not), under
    # either of its ids (one shown before its root came is renamed by it).
    diffs: dict[str, set[str]] = {}
    former: dict[str, str] = {}
    for e in events:
        if e.task.former_id is not None:
            former[e.task_id] = e.task.former_id
        if isinstance(e, DiffUpdated):
            diffs.setdefault(e.task_id, set()).add(e.digest)
    for task_id, state in out.items():
        shown = diffs.get(task_id, set()) | diffs.get(former.get(task_id, task_id), set())
        state["diffs"] = tuple(sorted(shown))
    return out


def expected_roots(specs: Sequence[SpanSpec]) -> set[tuple[str, str]]:
    """(trace, span) of every task root: a root candidate with no candidate ancestor."""
    by_id = {s.span_id: s for s in specs}
    out = set()

    def candidate(s: SpanSpec) -> bool:  # late attributes make a root too
        return cv.is_root_candidate(s.attrs_at(s.end_ns, stamped=False))

    for s in specs:
        if not candidate(s):
            continue
        p = by_id.get(s.parent_id) if s.parent_id else None
        nested = False
        while p is not None:
            if candidate(p):
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


def rooted(specs: Sequence[SpanSpec], trace_id: str, span_id: str) -> tuple[str, str]:
    """The task root (trace, span) that ``span_id`` is in, as the root-first
    order decides it: the outermost root candidate among the span and its
    ancestors; none: the trace's top span (a provisional task whose trace
    names no agent ends with its top span as its root)."""
    by_id = {(s.trace_id, s.span_id): s for s in specs}
    cur = by_id.get((trace_id, span_id))
    best: str | None = None
    top = span_id
    while cur is not None:
        top = cur.span_id
        if cv.is_root_candidate(cur.attrs_at(cur.end_ns, stamped=False)):
            best = cur.span_id
        cur = by_id.get((trace_id, cur.parent_id)) if cur.parent_id else None
    return (trace_id, best or top)


def task_roots(events: Sequence[Event], specs: Sequence[SpanSpec]) -> list[tuple[str, str]]:
    """The root of every task started, as :func:`rooted` says: a provisional
    task shown under an inner span (its guess proved wrong) is its root's
    task. One entry per task: a root twice is a task shown twice."""
    return [rooted(specs, e.task.trace_id, e.task.root_span_id) for e in events if isinstance(e, TaskStarted)]


def final_states_by_root(events: Sequence[Event], specs: Sequence[SpanSpec]) -> dict[str, dict[str, object]]:
    """:func:`final_states`, each task named ``<trace>-<root span>`` by its
    root (:func:`rooted`): a task shown before its root arrived under an
    inner span's id, or renamed by its root's own ``agent.task.id``, is
    compared by the run it is."""
    root_of: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.task_id not in root_of:
            root_of[e.task_id] = rooted(specs, e.task.trace_id, e.task.root_span_id)
    out: dict[str, dict[str, object]] = {}
    for task_id, state in final_states(events).items():
        # An open request's digest binds it to its task and run: the identity, compared above.
        approvals = cast(tuple[ApprovalRequest, ...], state["approvals"])
        out["-".join(root_of[task_id])] = {**state, "approvals": tuple(replace(r, digest="") for r in approvals)}
    return out


def looks_like_an_agent_run(specs: Sequence[SpanSpec], rule: ProvisionalRule | None = None) -> bool:
    """Whether one trace's spans, as they end, meet the provisional rule
    (docs/reference/conventions.md#provisional-tasks): a model call, and an agent
    span or a span naming an agent, a tool call, or N model calls."""
    rule = rule or ProvisionalRule()
    buf = TraceBuffer()
    for s in specs:
        a = s.attrs_at(s.end_ns, stamped=False)
        if cv.is_model_call(a):
            buf.calls += 1
        elif cv.is_tool_call(a):
            buf.tools += 1
        if cv.is_root_candidate(a) or cv.GEN_AI_AGENT_NAME in a or cv.AGENT_NAME in a:
            buf.agents += 1
    return rule.holds(buf)


def agent_rooted(specs: Sequence[SpanSpec]) -> set[str]:
    """The traces whose every model call lies under a task root (a root
    candidate, as the spans end): a task such a trace shows before its root
    arrives is the root-first task. Elsewhere a trace that looks like an agent
    run becomes a task of its own on the paths that show it provisionally,
    which the root-first order does not know (docs/reference/conventions.md#provisional-tasks)."""
    by_id = {(s.trace_id, s.span_id): s for s in specs}
    out = {s.trace_id for s in specs}
    for s in specs:
        if not cv.is_model_call(s.attrs_at(s.end_ns, stamped=False)):
            continue
        if rooted(specs, s.trace_id, s.span_id)[1] not in {
            x.span_id
            for x in specs
            if x.trace_id == s.trace_id and cv.is_root_candidate(x.attrs_at(x.end_ns, stamped=False))
        }:
            out.discard(s.trace_id)
    del by_id
    return out


def check_task_roots(events: Sequence[Event], specs: Sequence[SpanSpec], name: str = "") -> set[str]:
    """One task per root, never a second (a task shown before its root
    arrived under an inner span is its root's), and the root-first tasks of
    every agent-rooted trace (:func:`agent_rooted`); elsewhere a task is a
    root-first one or a trace's top span. Returns the agent-rooted traces."""
    got = task_roots(events, specs)
    assert len(got) == len(set(got)), (name, "a root shown as two tasks", got)
    want = expected_roots(specs)
    traces = agent_rooted(specs)
    assert {r for r in got if r[0] in traces} == {r for r in want if r[0] in traces}, name
    ids = {(s.trace_id, s.span_id) for s in specs}
    tops = {(s.trace_id, s.span_id) for s in specs if s.parent_id is None or (s.trace_id, s.parent_id) not in ids}
    assert {r for r in got if r[0] not in traces} <= want | tops, name
    return traces


def only(states: dict[str, dict[str, object]], traces: set[str]) -> dict[str, dict[str, object]]:
    """The final states (by root) of the tasks of ``traces``."""
    return {k: v for k, v in states.items() if k.split("-", 1)[0] in traces}


def corrections_by_root(
    events: Sequence[Event], specs: Sequence[SpanSpec]
) -> list[tuple[tuple[str, str], str, int, int]]:
    """Each TaskCorrected as (its task's root, the late span, the totals it
    leaves): its id follows the task's, which may be the id a task shown
    before its root arrived was shown under."""
    return sorted(
        (rooted(specs, e.task.trace_id, e.task.root_span_id), e.span_id, e.task.input_tokens, e.task.output_tokens)
        for e in events
        if isinstance(e, TaskCorrected)
    )
