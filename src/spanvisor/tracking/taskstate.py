"""One task's state, and the events its spans produce.

``TaskState.absorb`` reads one snapshot of one span of the task (an open
root polled, or an ended span) and returns the events it causes. Which span
changes produce which events is documented in
``docs/reference/conventions.md#which-changes-become-events``; in short:

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

**Components.** The task's state is a :class:`~.record.TaskRecord`; each
concern is a module that takes the record and returns the events it causes,
and imports nothing back: :mod:`.statefacts` (state fields), :mod:`.calls`
(model and tool calls, occupancy), :mod:`.taskbudget` (budgets and cost),
:mod:`.approvals`, :mod:`.artifacts`, :mod:`.diffs` and :mod:`.results`, :mod:`.stalls`.
``TaskState`` is the record plus the routing: which part of a span goes to
which concern, in which order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spanvisor.events import Event, Outcome, TaskFinished, TaskStarted
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.current import with_a2a_status
from spanvisor.spans.data import SpanData
from spanvisor.tracking import approvals, artifacts, calls, diffs, openers, results, statefacts, taskbudget
from spanvisor.tracking.identity import TaskIdentity
from spanvisor.tracking.outcome import NO_ERROR, Error, ErrorInfo, outcome_of
from spanvisor.tracking.record import TaskRecord
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.views import new_view

# What a task that saw no error reports at its end (read, never written).
_NO_ERRORS = ErrorInfo()


def _a2a(root: SpanData) -> SpanData:
    """The root, its ``a2a.task.state`` read as its ``agent.status`` (spans/current.py)."""
    a = with_a2a_status(root.attributes)
    return root if a is root.attributes else replace(root, attributes=a)


class TaskState(TaskRecord):
    """One task: its record, and the routing of a span's parts to the concerns."""

    __slots__ = ()

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
            branch=sz.name(a.get(cv.BRANCH), cv.BRANCH, notes),
            pull_request=sz.text(a.get(cv.PULL_REQUEST), cv.PULL_REQUEST, notes, sz.MAX_URL),
            status="starting",
            started_ns=span.start_ns,
            updated_ns=span.start_ns,
            budget_usd=settings.budgets.for_agent(settings.budgets.task_usd, agent_id),
        )
        wrapper = named is None and cv.TASK_NAME not in a and cv.is_agent_span(a)
        identity = TaskIdentity(agent_is_fallback=named is None, wrapper=wrapper)
        return cls(view, settings, identity=identity, last_ns=span.start_ns)

    def provisional(self) -> None:
        """Opened before its root arrived (:mod:`.provisional`): its identity
        is read as for a task whose root is unseen (nested agent spans may
        name it, as under a wrapper, until the root says what it is), and
        its views show a stand-in until the root's end (:meth:`view`)."""
        self.identity.unknown_root(())
        self.identity.shown = self._w.agent_id  # the service's, until a span names the agent
        self.update(provisional=True)

    def read_initial(self, span: SpanData, notes: list[str]) -> None:
        """The root's attributes as the task opens: its initial state, part of
        TaskStarted."""
        statefacts.read_initial(self, _a2a(span), notes)
        if span.attributes:
            taskbudget.read_root(self, span.attributes, notes)
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
            w = self._w
            if span.resource and w.agent_id == "unknown":
                svc = sz.name(span.resource.get(cv.SERVICE_NAME), "service.name", notes)
                if svc:
                    self.update(agent_id=svc)
            if is_root and ended and a and (back := self.identity.decide(a)):  # the root's word on being a wrapper
                self.update(**back)
            who = self.identity.read(w, span, notes, is_root)
            if who:
                self.update(**who)
            if is_root and self.root_at is not None:
                self._root_of_provisional(span, ended)
            budget_changed = "agent_id" in who and taskbudget.agent_default(self)
            if (is_root and a and taskbudget.read_root(self, a, notes)) or budget_changed:
                out.extend(taskbudget.warnings(self, now, notes))
            if is_root:
                # The root's attributes are the task's defaults: read before its
                # events, and never over a field a timed fact has set.
                results.apply(self, a, notes)
                out.extend(statefacts.attributes(self, _a2a(span), None, now, notes))
            raw_artifacts = a.get(cv.ARTIFACTS)
            if raw_artifacts is not None:
                out.extend(artifacts.from_list(self, raw_artifacts, now, notes))
        if span.events:
            # An open span read at now_ns: no event after it yet (it comes with the next read).
            limit = until_ns if until_ns is not None or ended else now_ns
            out.extend(self._read_events(span, notes, is_root, limit))
            if ended and not is_root and self.events_seen is not None:
                self.events_seen.pop(span.span_id, None)
                if not self.events_seen:
                    # An emptied dict keeps its grown table (184 bytes, not 64)
                    # in every task whose child spans carried events.
                    self.events_seen = None
        if until_ns is not None or not ended:
            return out
        if not is_root:
            # A child's state attributes are a timed fact at its end.
            out.extend(statefacts.attributes(self, span, (span.end_ns or 0, span.span_id, 1 << 30), now, notes))
            self.fields.forget(span.span_id)  # an ended span is read no more
        step = False  # neither a model call nor a tool call
        if cv.is_model_call(a):
            events, usd = calls.model_call(self, span, notes)
            if events:
                out.extend(events)
                # The budget is published here, nothing changing before it.
                out.extend(taskbudget.after_call(self, usd, events[0].time_ns, notes))
        elif not is_root and cv.is_tool_call(a):
            out.extend(calls.tool_call(self, span, notes))
        else:
            step = True
        if self.identity.wrapper and not is_root and cv.is_agent_span(a) and cv.agent_name(a) is not None:
            self.error_info().agent_ended(span, notes)
        if span.error and not is_root:
            errors = self.error_info()
            errors.span_failed(span, notes)
            if step and span.parent_id == (self.root_at or self._w.root_span_id):
                errors.step_failed(span)
        return out

    def _root_of_provisional(self, span: SpanData, ended: bool) -> None:
        """A provisional task's root speaks (its live record: its views show
        what it says from now on) or ends: a task like any other from here.
        It started when its root did (not when a span on a skewed clock
        says), and a root naming its agent by id only keeps a name other
        spans lent only if it is that agent's (a sub-agent named it while
        the agent was unknown)."""
        w, root, lent = self._w, span.attributes, self.identity.lent
        self.identity.shown = None
        self.update(provisional=False)
        if not ended:
            return
        self.root_at = None
        self.update(started_ns=span.start_ns)
        if (
            w.agent_name is not None
            and w.agent_name != w.agent_id
            and lent is not None
            and "agent_name" in lent
            and cv.agent_name(root) is None
            and cv.agent_id(root) is not None
        ):
            del lent["agent_name"]
            self.update(agent_name=None)

    def _read_events(self, span: SpanData, notes: list[str], is_root: bool, until_ns: int | None) -> list[Event]:
        # Events are known by (time, name, n-th of that pair), not by
        # position: the SDK keeps only the newest 128 events of a span, so
        # positions shift between two polls while this identity does not.
        out: list[Event] = []
        by_span = self.events_seen
        if by_span is None:
            by_span = self.events_seen = {}
        seen = by_span.setdefault(span.span_id, set())
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

    def _span_event(
        self, span: SpanData, index: int, name: str, time_ns: int, attrs: Any, notes: list[str], is_root: bool
    ) -> list[Event]:
        span_id = span.span_id
        if name == cv.EVENT_CHECKPOINT:
            return statefacts.checkpoint_event(self, span_id, index, time_ns, attrs, notes)
        if name == cv.EVENT_ARTIFACT:
            event_id = self.event_id("artifact", span_id, time_ns, index)
            return artifacts.add(self, artifacts.from_event(attrs, notes), event_id, time_ns, notes)
        if name == cv.EVENT_DIFF:
            return diffs.updated(self, self.event_id("diff", span_id, time_ns, index), time_ns, attrs, notes)
        if name == cv.EVENT_EXCEPTION:
            self.error_info().exception_event(attrs, is_root, (time_ns, span_id), notes)
        elif name in (cv.EVENT_APPROVAL_REQUEST, cv.EVENT_APPROVAL_DECISION):
            read = approvals.on_request if name == cv.EVENT_APPROVAL_REQUEST else approvals.on_decision
            # Who the span claims to be: only the opener's own note withdraws a request (tracking.openers).
            who = openers.claimed(span.attributes)
            return read(self, self.event_id(name, span_id, time_ns, index), time_ns, attrs, notes, who)
        return []

    # -- the end -------------------------------------------------------------

    def finish(self, root: SpanData, notes: list[str]) -> TaskFinished:
        self.finished = True
        taskbudget.publish(self)  # an ended task's budget is no one's to read
        errors = self.errors if self.errors is not None else _NO_ERRORS
        outcome = outcome_of(self.fields.explicit_status, root, errors, self.identity.wrapper)
        err = errors.reported(root, notes) if outcome == "error" else NO_ERROR
        w = self._w
        started = min(w.started_ns, root.start_ns) if w.started_ns else root.start_ns
        return self._finished(outcome, root.end_ns or root.start_ns, started, err, notes)

    def unended(self, idle_s: float) -> TaskFinished:
        """Finish a task whose root never ended but whose step directly under
        it failed (:attr:`.outcome.ErrorInfo.step`), once quiet: failed, with
        the error its spans reported and a note saying why."""
        self.finished = True
        taskbudget.publish(self)
        errors = self.error_info()
        step = errors.step
        name = step[2] if step is not None else ""
        note = (
            f"its root span never ended: finished as failed {round(idle_s)} s after its step {name!r} failed "
            "and its spans went quiet"
        )
        end = step[0] if step is not None else self.last_ns
        return self._finished("error", end, self._w.started_ns, errors.child, [note])

    def abandon(
        self, now_ns: int, reason: str, outcome: Outcome = "evicted", error_type: str = "SpanvisorEvicted"
    ) -> TaskFinished:
        """Finish a task spanvisor had to stop tracking (evicted for capacity,
        or lost: its agent went silent), so that every sink still sees exactly
        one TaskFinished for it (and no task stays "running" in metrics
        forever). Never ``cancelled``: nobody cancelled it."""
        self.finished = True
        taskbudget.publish(self)
        return self._finished(outcome, now_ns, self._w.started_ns, (error_type, reason, None), [reason])

    def _finished(self, outcome: Outcome, end: int, started: int, err: Error, notes: list[str]) -> TaskFinished:
        end = max(end, self.last_ns)
        self.update(status=outcome, ended_ns=end, started_ns=started)
        t = self.next_time(end)
        w = self._w
        duration_s = max(0.0, (end - started) / 1e9)
        usual = (
            self.settings.outliers.judge(w.agent_id, w.input_tokens + w.output_tokens, w.cost_usd, duration_s)
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
