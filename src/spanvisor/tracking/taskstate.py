"""One task's state, and the events its spans produce.

``TaskState.absorb`` reads one snapshot of one span of the task (an open
root polled, or an ended span) and returns the events it causes. Which span
changes produce which events is documented in
``docs/conventions.md#which-changes-become-events``; in short:

* an ``agent.checkpoint`` span event → ``Checkpoint(source="event")``;
* a change of progress, step, steps, message or status → ``Checkpoint(source="state")``;
* a model call that ends with token usage → ``Checkpoint(source="model_call")``,
  then a ``ContextWarning`` for each level it crosses;
* a tool call that ends → ``Checkpoint(source="tool_call")``;
* an ``agent.artifact`` event or a new entry in ``agent.artifacts`` → ``ArtifactAdded``;
* the root's end → ``TaskFinished``.

**Time order.** Every event leaves with a time no earlier than the task's
previous event, and ``TaskView.seq`` grows by one per event; a fact that
arrives late is shown at the time it became known, with the state as of
then. Which value each field shows is :mod:`.fields`'s rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    Checkpoint,
    Event,
    Outcome,
    TaskFinished,
    TaskStarted,
    TaskView,
    stable_id,
)
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.data import SpanData
from spanvisor.tracking import approvals, artifacts, calls, results
from spanvisor.tracking.fields import FactTime, TaskFields
from spanvisor.tracking.identity import TaskIdentity
from spanvisor.tracking.outcome import NO_ERROR, Error, ErrorInfo, outcome_of
from spanvisor.tracking.taskcontext import TaskContext, TrackerSettings
from spanvisor.tracking.views import VIEW_FIELDS, IdPrefix, build_checkpoint, build_view, new_view

_EVENT_META = (cv.PROGRESS, cv.STEP, cv.STEPS, cv.MESSAGE, cv.STATUS, "message")


@dataclass
class TaskState:
    initial: InitVar[TaskView]
    settings: TrackerSettings
    identity: TaskIdentity = field(default_factory=lambda: TaskIdentity(agent_is_fallback=False))
    events_seen: dict[str, set[tuple[int, str, int]]] = field(default_factory=dict)
    state_seen: dict[str, int] = field(default_factory=dict)
    errors: ErrorInfo = field(default_factory=ErrorInfo)
    finished: bool = False
    last_ns: int = 0
    cost_nano: int = 0  # the task's cost in nano-dollars (exact sums; cost_usd shows it)
    # (unit, level) of the task budget warned of: a shared empty frozenset
    # until the first warning (an empty set is 216 bytes in every task).
    budget_said: frozenset[tuple[str, float]] = frozenset()
    budget_from_root: bool = False
    stalls: int = 0  # how often the task stalled (numbers its stall events)
    approvals_closed: frozenset[str] = frozenset()  # decided or timed out: never reopened (shared empty default)
    # The working state is a plain dict; the frozen TaskView that events carry
    # is built only when one is needed (dataclasses.replace per change was
    # the tracker's largest cost).
    _w: dict[str, Any] = field(init=False, repr=False)
    _view: TaskView | None = field(init=False, repr=False, default=None)
    _id_prefix: IdPrefix | None = field(init=False, repr=False, default=None)

    def __post_init__(self, initial: TaskView) -> None:
        self._w = {f: getattr(initial, f) for f in VIEW_FIELDS}
        self._view = initial
        self.context = TaskContext(self.settings)
        self.fields = TaskFields(self.context, self.settings.thresholds)

    @property
    def working(self) -> Mapping[str, Any]:
        """The task's current fields, by TaskView field name (read-only use)."""
        return self._w

    @property
    def view(self) -> TaskView:
        if self._view is None:
            self._view = build_view(self._w)
        return self._view

    @classmethod
    def open(
        cls,
        task_id: str,
        trace_id: str,
        root_span_id: str,
        span: SpanData,
        settings: TrackerSettings,
        notes: list[str],
    ) -> TaskState:
        a = span.attributes
        agent_name = sz.name(cv.agent_name(a), "agent.name", notes)
        named = sz.name(cv.agent_id(a), "agent.id", notes) or agent_name
        agent_id = named or sz.name(span.resource.get(cv.SERVICE_NAME), "service.name", notes) or "unknown"
        view = new_view(  # its run_id from trace_id and root_span_id
            task_id=task_id,
            trace_id=trace_id,
            root_span_id=root_span_id,
            agent_id=agent_id,
            agent_name=agent_name,
            task_name=sz.text(cv.task_name(a, span.name), "agent.task.name", notes, 500),
            repo=sz.name(a.get(cv.REPO), "agent.repo", notes),
            status="starting",
            started_ns=span.start_ns,
            updated_ns=span.start_ns,
            budget_usd=settings.budgets.for_agent(settings.budgets.task_usd, agent_id),
        )
        wrapper = named is None and cv.TASK_NAME not in a and cv.is_agent_span(a)
        identity = TaskIdentity(agent_is_fallback=named is None, wrapper=wrapper)
        return cls(view, settings, identity=identity, last_ns=span.start_ns)

    # -- helpers -------------------------------------------------------------

    def event_id(self, *parts: object) -> str:
        """``stable_id(task_id, run_id, *parts)``, hashed once per task."""
        if self._id_prefix is None:
            self._id_prefix = IdPrefix(self._w["task_id"], self._w["run_id"])
        return self._id_prefix.id(*parts)

    def update(self, **changes: Any) -> None:
        self._w.update(changes)
        self._view = None

    def next_time(self, t: int) -> int:
        """The time of the next event, never before the previous one; ``seq`` grows."""
        t = max(t, self.last_ns)
        self.last_ns = t
        w = self._w
        w["seq"] += 1
        w["updated_ns"] = max(w["updated_ns"], t)
        self._view = None
        return t

    def read_initial(self, span: SpanData, notes: list[str]) -> None:
        """The root's attributes as the task opens: its initial state, part of
        TaskStarted."""
        self._read_state(self.fields.attr_changes(span.span_id, span.attributes), notes, None)
        if span.attributes:
            self._read_budget(span.attributes, notes)
            results.apply(self, span.attributes, notes)

    def started(self, time_ns: int, notes: list[str]) -> list[Event]:
        """TaskStarted, then the warnings of a task that starts already past a
        level (a resumed conversation)."""
        if self.fields.explicit_status is None:
            self.update(status="starting")
        t = self.next_time(time_ns)
        ev = TaskStarted(event_id=self.event_id("started"), time_ns=t, task=self.view, notes=tuple(notes))
        return [ev, *calls.context_warnings(self, t, notes)]

    # -- reading a span --------------------------------------------------------

    def absorb(
        self,
        span: SpanData,
        notes: list[str],
        is_root: bool,
        *,
        now_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[Event]:
        """The events one snapshot of one span causes.

        ``now_ns``: when an open span was read (a poll); its attribute changes
        count from then. ``until_ns``: read only the span's events up to this
        time and none of its attributes (the open root, read just before a
        child that ended at ``until_ns`` so that nothing later overtakes it).
        """
        out: list[Event] = []
        a = span.attributes
        ended = span.end_ns is not None
        now = span.end_ns if span.end_ns is not None else (now_ns if now_ns is not None else self.last_ns)
        if until_ns is None:
            if span.resource and self._w["agent_id"] == "unknown":
                svc = sz.name(span.resource.get(cv.SERVICE_NAME), "service.name", notes)
                if svc:
                    self.update(agent_id=svc)
            who = self.identity.read(self._w, span, notes, is_root)
            if who:
                self.update(**who)
            budget_changed = "agent_id" in who and self._default_budget()
            if (is_root and a and self._read_budget(a, notes)) or budget_changed:
                out.extend(calls.budget_warnings(self, now, notes))
            if is_root:
                # The root's attributes are the task's defaults: read before its
                # events, and never over a field a timed fact has set.
                results.apply(self, a, notes)
                out.extend(self._attribute_state(span, None, now, notes))
            out.extend(self._read_artifacts(a.get(cv.ARTIFACTS), now, notes))
        if span.events:
            # An open span read at now_ns: no event after it yet (it comes with the next read).
            limit = until_ns if until_ns is not None or ended else now_ns
            out.extend(self._read_events(span, notes, is_root, limit))
            if ended and not is_root:
                self.events_seen.pop(span.span_id, None)
                if not self.events_seen:
                    # An emptied dict keeps its grown table (184 bytes, not 64)
                    # in every task whose child spans carried events.
                    self.events_seen = {}
        if until_ns is not None or not ended:
            return out
        if not is_root:
            # A child's state attributes are a timed fact at its end.
            out.extend(self._attribute_state(span, (span.end_ns or 0, span.span_id, 1 << 30), now, notes))
            self.fields.forget(span.span_id)  # an ended span is read no more
        if cv.is_model_call(a):
            out.extend(calls.model_call(self, span, notes))
        elif not is_root and cv.is_tool_call(a):
            out.extend(calls.tool_call(self, span, notes))
        if self.identity.wrapper and not is_root and cv.is_agent_span(a) and cv.agent_name(a) is not None:
            self.errors.agent_ended(span, notes)
        if span.error and not is_root:
            self.errors.span_failed(span, notes)
        return out

    def _default_budget(self) -> bool:
        """The agent's default task budget, once the agent is known and the
        root set none; True when it changed."""
        if self.budget_from_root:
            return False
        b = self.settings.budgets
        default = b.for_agent(b.task_usd, self._w["agent_id"])
        if default == self._w["budget_usd"]:
            return False
        self.update(budget_usd=default)
        return True

    def _read_budget(self, a: Any, notes: list[str]) -> bool:
        """The task's budgets from its root; True when one changed."""
        usd = sz.number(a.get(cv.BUDGET_USD), cv.BUDGET_USD, notes) if cv.BUDGET_USD in a else None
        tokens = sz.tokens(a.get(cv.BUDGET_TOKENS), cv.BUDGET_TOKENS, notes) if cv.BUDGET_TOKENS in a else None
        changes: dict[str, Any] = {}
        if usd is not None and usd > 0:
            self.budget_from_root = True
            if usd != self._w["budget_usd"]:
                changes["budget_usd"] = usd
        if tokens and tokens != self._w["budget_tokens"]:
            changes["budget_tokens"] = tokens
        if changes:
            self.update(**changes)
        return bool(changes)

    def _read_events(self, span: SpanData, notes: list[str], is_root: bool, until_ns: int | None) -> list[Event]:
        # Events are known by (time, name, n-th of that pair), not by
        # position: the SDK keeps only the newest 128 events of a span, so
        # positions shift between two polls while this identity does not.
        out: list[Event] = []
        seen = self.events_seen.setdefault(span.span_id, set())
        counts: dict[tuple[int, str], int] = {}
        for ev in sorted(span.events, key=lambda e: e.time_ns) if len(span.events) > 1 else span.events:
            pair = (ev.time_ns, ev.name)
            n = counts[pair] = counts.get(pair, 0) + 1
            ident = (ev.time_ns, ev.name, n)
            if ident in seen or (until_ns is not None and ev.time_ns > until_ns):
                continue
            seen.add(ident)
            out.extend(self._span_event(span, n, ev.name, ev.time_ns, ev.attributes, notes, is_root))
        return out

    def _attribute_state(self, span: SpanData, timed: FactTime | None, now: int, notes: list[str]) -> list[Event]:
        if self.fields.carries_none(span.span_id, span.attributes):
            return []  # a model call, say: no state attribute, nothing changed
        changed = self._read_state(self.fields.attr_changes(span.span_id, span.attributes), notes, timed)
        if not changed or self.finished:
            return []
        out: list[Event] = [self._state_checkpoint(span.span_id, changed, now, notes)]
        if "context_tokens" in changed or "context_limit" in changed:
            out.extend(calls.context_warnings(self, now, notes))
        return out

    def _read_state(
        self, src: Any, notes: list[str], timed: FactTime | None, plain_message: bool = False
    ) -> tuple[str, ...]:
        """Apply the state fields ``src`` carries (see :mod:`.fields`); the fields that changed."""
        if not src:
            return ()  # most spans carry no state: no change, not even of status
        changes = self.fields.changes(self._w, src, notes, timed, plain_message)
        status = self.fields.status_after(self._w, changes)
        if status != self._w["status"] and not self.finished:
            changes["status"] = status
        if changes:
            self.update(**changes)
        return tuple(changes)

    def _state_checkpoint(self, span_id: str, changed: tuple[str, ...], now: int, notes: list[str]) -> Checkpoint:
        w = self._w
        key = stable_id(
            w["status"], w["progress"], w["step"], w["steps"], w["message"], w["context_tokens"], w["context_limit"]
        )
        n = self.state_seen.get(key, 0) + 1
        self.state_seen[key] = n
        t = self.next_time(now)
        return build_checkpoint(
            self.event_id("state", span_id, key, n), t, self.view, tuple(notes), "state", changed, {}
        )

    def _span_event(
        self,
        span: SpanData,
        index: int,
        name: str,
        time_ns: int,
        attrs: Any,
        notes: list[str],
        is_root: bool,
    ) -> list[Event]:
        if name == cv.EVENT_CHECKPOINT:
            changed = self._read_state(attrs, notes, (time_ns, span.span_id, index), plain_message=True)
            extras = {k: sz.jsonable(x, k, notes) for k, x in list(attrs.items())[:50] if k not in _EVENT_META}
            t = self.next_time(time_ns)
            event_id = self.event_id("event", span.span_id, time_ns, index)
            cp = build_checkpoint(event_id, t, self.view, tuple(notes), "event", changed, extras)
            if "context_tokens" in changed or "context_limit" in changed:
                return [cp, *calls.context_warnings(self, t, notes)]
            return [cp]
        if name == cv.EVENT_ARTIFACT:
            event_id = self.event_id("artifact", span.span_id, time_ns, index)
            return self._add_artifact(artifacts.from_event(attrs, notes), event_id, time_ns, notes)
        if name == cv.EVENT_EXCEPTION:
            self.errors.exception_event(attrs, is_root, (time_ns, span.span_id), notes)
        elif name in (cv.EVENT_APPROVAL_REQUEST, cv.EVENT_APPROVAL_DECISION):
            read = approvals.on_request if name == cv.EVENT_APPROVAL_REQUEST else approvals.on_decision
            return read(self, self.event_id(name, span.span_id, time_ns, index), time_ns, attrs, notes)
        return []

    def _read_artifacts(self, raw: Any, now: int, notes: list[str]) -> list[Event]:
        if raw is None:
            return []
        out: list[Event] = []
        for item, art in artifacts.new_from_list(raw, self._w["artifacts"], notes):
            out.extend(self._add_artifact(art, self.event_id("artifact", item), now, notes))
        return out

    def _add_artifact(self, art: Artifact, event_id: str, now: int, notes: list[str]) -> list[Event]:
        known = self._w["artifacts"]
        if art in known or len(known) >= sz.MAX_LIST:
            return []
        self.update(artifacts=(*known, art))
        t = self.next_time(now)
        return [ArtifactAdded(event_id=event_id, time_ns=t, task=self.view, notes=tuple(notes), artifact=art)]

    def finish(self, root: SpanData, notes: list[str]) -> TaskFinished:
        self.finished = True
        calls.publish_budget(self)  # an ended task's budget is no one's to read
        outcome = outcome_of(self.fields.explicit_status, root, self.errors, self.identity.wrapper)
        err = self.errors.reported(root, notes) if outcome == "error" else NO_ERROR
        v = self.view
        started = min(v.started_ns, root.start_ns) if v.started_ns else root.start_ns
        return self._finished(outcome, root.end_ns or root.start_ns, started, err, notes)

    def abandon(
        self, now_ns: int, reason: str, outcome: Outcome = "cancelled", error_type: str = "SpanvisorEvicted"
    ) -> TaskFinished:
        """Finish a task spanvisor had to stop tracking (evicted, or lost:
        its agent went silent), so that every sink still sees exactly one
        TaskFinished for it (and no task stays "running" in metrics forever)."""
        self.finished = True
        calls.publish_budget(self)
        return self._finished(outcome, now_ns, self.view.started_ns, (error_type, reason, None), [reason])

    def _finished(self, outcome: Outcome, end: int, started: int, err: Error, notes: list[str]) -> TaskFinished:
        end = max(end, self.last_ns)
        self.update(status=outcome, ended_ns=end, started_ns=started)
        t = self.next_time(end)
        w = self._w
        duration_s = max(0.0, (end - started) / 1e9)
        usual = (
            self.settings.outliers.judge(
                w["agent_id"], w["input_tokens"] + w["output_tokens"], w["cost_usd"], duration_s
            )
            if outcome == "complete"
            else ()
        )
        return TaskFinished(
            event_id=self.event_id("finished"),
            time_ns=t,
            task=self.view,
            notes=tuple(notes),
            outcome=outcome,
            duration_s=duration_s,
            error_type=err[0],
            error_message=err[1],
            stacktrace=err[2],
            outliers=usual,
        )


__all__ = ["TaskState", "TrackerSettings"]
