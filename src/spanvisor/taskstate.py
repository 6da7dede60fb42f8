"""One task's state, and the events its spans produce.

``TaskState.absorb`` reads one snapshot of one span of the task (an open
span polled, or an ended one) and returns the events it causes, in order.
Which span changes produce which events is documented in
``docs/conventions.md#which-changes-become-events``; in short:

* an ``agent.checkpoint`` span event → ``Checkpoint(source="event")``;
* a change of progress, step, steps, message or status → ``Checkpoint(source="state")``;
* a model call that ends with token usage → ``Checkpoint(source="model_call")``,
  then a ``ContextWarning`` for each threshold it crosses;
* an ``agent.artifact`` event or a new entry in ``agent.artifacts`` → ``ArtifactAdded``;
* the root's end → ``TaskFinished``.

A plain span ending (a tool call, a retrieval) produces nothing, so 10,000
tool calls cause no events of their own.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field, fields
from typing import Any

from spanvisor import conventions as cv
from spanvisor import sanitize as sz
from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    Checkpoint,
    ContextWarning,
    Event,
    Outcome,
    Status,
    TaskFinished,
    TaskStarted,
    TaskView,
    stable_id,
)
from spanvisor.spans import SpanData

_CANCEL_TYPES = frozenset(
    {
        "CancelledError",
        "asyncio.CancelledError",
        "asyncio.exceptions.CancelledError",
        "KeyboardInterrupt",
        "GeneratorExit",
        "concurrent.futures._base.CancelledError",
    }
)


_STATE_KEYS = (cv.PROGRESS, cv.STEP, cv.STEPS, cv.MESSAGE, cv.STATUS, cv.CONTEXT_LIMIT, cv.CONTEXT_TOKENS)


@dataclass
class TrackerSettings:
    thresholds: tuple[float, ...] = (0.70, 0.85)
    windows: cv.ContextWindows = field(default_factory=cv.ContextWindows)


_VIEW_FIELDS = tuple(f.name for f in fields(TaskView))


@dataclass
class TaskState:
    initial: InitVar[TaskView]
    settings: TrackerSettings
    explicit_status: Status | None = None
    explicit_limit: int | None = None
    explicit_tokens: bool = False
    # The agent id came from service.name or nothing: the root may name it.
    agent_is_fallback: bool = False
    root_seen: bool = False
    fired: dict[float, bool] = field(default_factory=dict)
    crossings: dict[float, int] = field(default_factory=dict)
    events_seen: dict[str, set[tuple[int, str, int]]] = field(default_factory=dict)
    state_seen: dict[str, int] = field(default_factory=dict)
    attrs_seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_model_end: int = -1
    error: tuple[str | None, str | None, str | None] = (None, None, None)
    finished: bool = False
    # The working state is a plain dict; the frozen TaskView that events carry
    # is built only when one is needed (dataclasses.replace per change was
    # the tracker's largest cost).
    _w: dict[str, Any] = field(init=False, repr=False)
    _view: TaskView | None = field(init=False, repr=False, default=None)

    def __post_init__(self, initial: TaskView) -> None:
        self._w = {f: getattr(initial, f) for f in _VIEW_FIELDS}
        self._view = initial

    @property
    def view(self) -> TaskView:
        if self._view is None:
            self._view = TaskView(*[self._w[f] for f in _VIEW_FIELDS])
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
        view = TaskView(
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
        )
        return cls(view, settings, agent_is_fallback=named is None)

    # -- helpers -------------------------------------------------------------

    def _id(self, *parts: object) -> str:
        return stable_id(self.view.task_id, *parts)

    def _set(self, **changes: Any) -> None:
        self._w.update(changes)
        self._view = None

    def _status(self) -> Status:
        return self._status_after({})

    def started(self, time_ns: int, notes: list[str]) -> TaskStarted:
        if self.explicit_status is None:
            self._set(status="starting")
        return TaskStarted(event_id=self._id("started"), time_ns=time_ns, task=self.view, notes=tuple(notes))

    # -- reading a span --------------------------------------------------------

    def absorb(self, span: SpanData, notes: list[str], is_root: bool) -> list[Event]:
        out: list[Event] = []
        a = span.attributes
        now = span.end_ns or span.start_ns
        if span.resource and self._w["agent_id"] == "unknown":
            svc = sz.name(span.resource.get(cv.SERVICE_NAME), "service.name", notes)
            if svc:
                self._set(agent_id=svc)
        self._read_identity(a, notes, is_root)
        # Attributes first, then the span's new events: attributes carry no
        # time, and an event is usually the later word (a checkpoint with
        # progress 80 after agent.progress was set to 30).
        changed = self._read_state(self._attr_changes(span.span_id, a), notes)
        out.extend(self._read_artifacts(span.span_id, a.get(cv.ARTIFACTS), now, notes))
        if changed and not self.finished:
            out.append(self._state_checkpoint(span.span_id, changed, now, notes))
            if "context_tokens" in changed or "context_limit" in changed:
                out.extend(self._warnings(now, notes))
        if span.events:
            # Events are known by (time, name, n-th of that pair), not by
            # position: the SDK keeps only the newest 128 events of a span, so
            # positions shift between two polls while this identity does not.
            seen = self.events_seen.setdefault(span.span_id, set())
            counts: dict[tuple[int, str], int] = {}
            for ev in span.events:
                pair = (ev.time_ns, ev.name)
                n = counts[pair] = counts.get(pair, 0) + 1
                ident = (ev.time_ns, ev.name, n)
                if ident in seen:
                    continue
                seen.add(ident)
                out.extend(self._span_event(span, n, ev.name, ev.time_ns, ev.attributes, notes, is_root))
            if span.end_ns is not None and not is_root:
                self.events_seen.pop(span.span_id, None)
        if span.end_ns is not None and cv.is_model_call(a):
            out.extend(self._model_call(span, notes))
        if span.end_ns is not None and span.error and not is_root and self.error == (None, None, None):
            self.error = (None, sz.text(span.status_message, "status.message", notes), None)
        if span.end_ns is not None and not is_root:
            self.attrs_seen.pop(span.span_id, None)  # an ended span is read no more
        return out

    def _attr_changes(self, span_id: str, a: Any) -> dict[str, Any]:
        """The state attributes of this span that changed since it was last read.

        Comparing with the span's own earlier values, not the task's view,
        keeps a stale attribute from undoing a later checkpoint event.
        """
        current = {k: a[k] for k in _STATE_KEYS if k in a} if a else {}
        before = self.attrs_seen.pop(span_id, None) or {}
        if current:  # remembered only for spans that carry state: memory per task stays small
            self.attrs_seen[span_id] = current
        return {k: v for k, v in current.items() if before.get(k) != v}

    def _read_identity(self, a: Any, notes: list[str], is_root: bool) -> None:
        """Name, repo and agent: any span may fill a gap, the root has the last word.

        A sub-agent span carrying its own agent.task.name can arrive first
        on the end-order path; its values hold only until the root arrives.
        (A root read at start fills them before any other span, in-process.)
        """
        w = self._w
        authoritative = is_root and not self.root_seen
        if is_root:
            self.root_seen = True
        gaps = self.agent_is_fallback or w["repo"] is None or w["task_name"] is None or w["agent_name"] is None
        if not a or not (authoritative or gaps):
            return  # the usual span: nothing to learn about the task's identity
        agent = sz.name(cv.agent_id(a), cv.AGENT_ID, notes) or sz.name(cv.agent_name(a), "agent.name", notes)
        if agent and (self.agent_is_fallback or authoritative):
            self.agent_is_fallback = False
            self._set(agent_id=agent)
        for field_name, key, limit in (("repo", cv.REPO, 256), ("task_name", cv.TASK_NAME, 500)):
            if key in a and (authoritative or w[field_name] is None):
                value = sz.text(a.get(key), key, notes, limit)
                if value is not None:
                    self._set(**{field_name: value})
        n = cv.agent_name(a)
        if n is not None and (authoritative or w["agent_name"] is None):
            self._set(agent_name=sz.name(n, "agent.name", notes))

    def _read_state(self, src: Any, notes: list[str], plain_message: bool = False) -> tuple[str, ...]:
        """Apply progress/step/steps/message/status; return the fields that changed.

        ``plain_message``: a checkpoint event may say ``message`` for short.
        """
        if not src:
            return ()  # most spans carry no state: no change, not even of status
        v = self.view
        changes: dict[str, Any] = {}
        if cv.PROGRESS in src:
            p = sz.progress(src[cv.PROGRESS], notes)
            if p is not None and p != v.progress:
                changes["progress"] = p
        if cv.STEP in src:
            s = sz.name(src[cv.STEP], cv.STEP, notes)
            if s is not None and s != v.step:
                changes["step"] = s
        if cv.STEPS in src:
            steps = sz.string_list(src[cv.STEPS], cv.STEPS, notes)
            if steps and steps != v.steps:
                changes["steps"] = steps
        msg_key = cv.MESSAGE if cv.MESSAGE in src else ("message" if plain_message and "message" in src else None)
        if msg_key is not None:
            m = sz.text(src[msg_key], cv.MESSAGE, notes)
            if m is not None and m != v.message:
                changes["message"] = m
        if cv.STATUS in src:
            raw = sz.name(src[cv.STATUS], cv.STATUS, notes)
            st = raw.strip().lower() if raw else None
            if st in cv.STATUSES:
                self.explicit_status = st  # type: ignore[assignment]
            elif st is not None:
                sz._note(notes, cv.STATUS, f"unknown status {st[:40]!r} ignored")
        if cv.CONTEXT_LIMIT in src:
            lim = sz.tokens(src[cv.CONTEXT_LIMIT], cv.CONTEXT_LIMIT, notes)
            if lim:
                self.explicit_limit = lim
                if lim != v.context_limit:
                    changes["context_limit"] = lim
        if cv.CONTEXT_TOKENS in src:
            t = sz.tokens(src[cv.CONTEXT_TOKENS], cv.CONTEXT_TOKENS, notes)
            if t is not None:
                # The agent reports occupancy itself: it wins over model calls
                # from then on, whatever order the spans arrive in.
                self.explicit_tokens = True
                if t != v.context_tokens:
                    changes["context_tokens"] = t
        status = self._status_after(changes)
        if status != v.status and not self.finished:
            changes["status"] = status
        if changes:
            self._set(**changes)
        return tuple(changes)

    def _status_after(self, changes: dict[str, Any]) -> Status:
        """The derived status once ``changes`` apply: explicit wins, then the window."""
        if self.explicit_status is not None:
            return self.explicit_status
        tokens = changes.get("context_tokens", self._w["context_tokens"])
        limit = changes.get("context_limit", self._w["context_limit"])
        if tokens is not None and limit and self.settings.thresholds and tokens / limit >= self.settings.thresholds[0]:
            return "context_warning"
        return "working"

    def _state_checkpoint(self, span_id: str, changed: tuple[str, ...], now: int, notes: list[str]) -> Checkpoint:
        w = self._w
        key = stable_id(
            w["status"], w["progress"], w["step"], w["steps"], w["message"], w["context_tokens"], w["context_limit"]
        )
        n = self.state_seen.get(key, 0) + 1
        self.state_seen[key] = n
        self._set(updated_ns=max(w["updated_ns"], now))
        return Checkpoint(
            event_id=self._id("state", span_id, key, n),
            time_ns=now,
            task=self.view,
            notes=tuple(notes),
            source="state",
            changed=changed,
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
            changed = self._read_state(attrs, notes, plain_message=True)
            extras = {
                k: sz.jsonable(x, k, notes)
                for k, x in list(attrs.items())[:50]
                if k not in (cv.PROGRESS, cv.STEP, cv.STEPS, cv.MESSAGE, cv.STATUS, "message")
            }
            self._set(updated_ns=max(self.view.updated_ns, time_ns))
            cp = Checkpoint(
                event_id=self._id("event", span.span_id, time_ns, index),
                time_ns=time_ns,
                task=self.view,
                notes=tuple(notes),
                source="event",
                changed=changed,
                attributes=extras,
            )
            if "context_tokens" in changed or "context_limit" in changed:
                return [cp, *self._warnings(time_ns, notes)]
            return [cp]
        if name == cv.EVENT_ARTIFACT:
            art_name = sz.text(attrs.get(cv.ARTIFACT_NAME) or attrs.get("name"), cv.ARTIFACT_NAME, notes, 500)
            uri = sz.text(attrs.get(cv.ARTIFACT_URI) or attrs.get("uri"), cv.ARTIFACT_URI, notes, 3000)
            kind = sz.name(attrs.get(cv.ARTIFACT_KIND) or attrs.get("kind"), cv.ARTIFACT_KIND, notes)
            return self._add_artifact(
                Artifact(art_name or uri or "artifact", uri, kind),
                self._id("artifact", span.span_id, time_ns, index),
                time_ns,
                notes,
            )
        if name == cv.EVENT_EXCEPTION and (is_root or self.error == (None, None, None)):
            self.error = (
                sz.name(attrs.get("exception.type"), "exception.type", notes),
                sz.text(attrs.get("exception.message"), "exception.message", notes),
                sz.text(attrs.get("exception.stacktrace"), "exception.stacktrace", notes, 8000),
            )
        return []

    def _read_artifacts(self, span_id: str, raw: Any, now: int, notes: list[str]) -> list[Event]:
        out: list[Event] = []
        known = {a.name for a in self.view.artifacts} | {a.uri for a in self.view.artifacts if a.uri}
        for item in sz.string_list(raw, cv.ARTIFACTS, notes):
            if item not in known:
                uri = item if "://" in item else None
                out.extend(
                    self._add_artifact(
                        Artifact(item.rsplit("/", 1)[-1] if uri else item, uri),
                        self._id("artifact", item),
                        now,
                        notes,
                    )
                )
                known.add(item)
        return out

    def _add_artifact(self, art: Artifact, event_id: str, now: int, notes: list[str]) -> list[Event]:
        if art in self.view.artifacts or len(self.view.artifacts) >= sz.MAX_LIST:
            return []
        self._set(artifacts=(*self.view.artifacts, art), updated_ns=max(self.view.updated_ns, now))
        return [ArtifactAdded(event_id=event_id, time_ns=now, task=self.view, notes=tuple(notes), artifact=art)]

    def _model_call(self, span: SpanData, notes: list[str]) -> list[Event]:
        a = span.attributes
        raw_in, raw_out = cv.usage(a)
        t_in = sz.tokens(raw_in, "input_tokens", notes)
        t_out = sz.tokens(raw_out, "output_tokens", notes)
        if t_in is None and t_out is None:
            return []
        w = self._w
        model = sz.name(cv.model_name(a), "model", notes) or w["model"]
        changes: dict[str, Any] = {
            "input_tokens": w["input_tokens"] + (t_in or 0),
            "output_tokens": w["output_tokens"] + (t_out or 0),
            "model": model,
        }
        end = span.end_ns or 0
        # Occupancy is the latest call's prompt plus its output, not a sum.
        if end >= self.last_model_end:
            self.last_model_end = end
            if not self.explicit_tokens:
                changes["context_tokens"] = (t_in or 0) + (t_out or 0)
        if self.explicit_limit is None:
            changes["context_limit"] = self.settings.windows.lookup(model) or w["context_limit"]
        changes["status"] = self._status_after(changes)
        changes["updated_ns"] = max(w["updated_ns"], end)
        self._set(**changes)
        cp = Checkpoint(
            event_id=self._id("model", span.span_id),
            time_ns=end,
            task=self.view,
            notes=tuple(notes),
            source="model_call",
            changed=("tokens",),
        )
        return [cp, *self._warnings(end, notes)]

    def _warnings(self, now: int, notes: list[str]) -> list[Event]:
        v = self.view
        ratio = v.context_ratio
        if ratio is None or v.context_tokens is None or v.context_limit is None:
            return []
        out: list[Event] = []
        top = self.settings.thresholds[-1] if self.settings.thresholds else None
        for t in self.settings.thresholds:
            if ratio >= t and not self.fired.get(t):
                self.fired[t] = True
                n = self.crossings[t] = self.crossings.get(t, 0) + 1
                out.append(
                    ContextWarning(
                        event_id=self._id("context", t, n),
                        time_ns=now,
                        task=v,
                        notes=tuple(notes),
                        level="critical" if t == top and len(self.settings.thresholds) > 1 else "warning",
                        threshold=t,
                        ratio=ratio,
                        tokens=v.context_tokens,
                        limit=v.context_limit,
                    )
                )
            elif ratio < t and self.fired.get(t):
                self.fired[t] = False  # re-arm, e.g. after the agent compacted its context
        return out

    def finish(self, root: SpanData, notes: list[str]) -> TaskFinished:
        self.finished = True
        end = root.end_ns or root.start_ns
        etype, emsg, etrace = self.error
        outcome: Outcome
        # The span's ERROR status beats an agent's "complete": a crash after
        # the agent declared victory is still a crash. "cancelled" wins both.
        if self.explicit_status == "cancelled" or (root.error and etype in _CANCEL_TYPES):
            outcome = "cancelled"
        elif root.error or self.explicit_status == "error":
            outcome = "error"
        else:
            outcome = "complete"
        if outcome == "error" and emsg is None:
            emsg = sz.text(root.status_message, "status.message", notes)
        started = min(self.view.started_ns, root.start_ns) if self.view.started_ns else root.start_ns
        self._set(
            status=outcome,
            ended_ns=end,
            started_ns=started,
            updated_ns=max(self.view.updated_ns, end),
        )
        if outcome != "error":
            etype = emsg = etrace = None
        return TaskFinished(
            event_id=self._id("finished"),
            time_ns=end,
            task=self.view,
            notes=tuple(notes),
            outcome=outcome,
            duration_s=max(0.0, (end - started) / 1e9),
            error_type=etype,
            error_message=emsg,
            stacktrace=etrace,
        )

    def abandon(self, now_ns: int, reason: str) -> TaskFinished:
        """Finish a task spanvisor had to stop tracking, so that every sink
        still sees exactly one TaskFinished for it (and no task stays
        "running" in metrics forever)."""
        self.finished = True
        end = max(now_ns, self.view.updated_ns)
        self._set(status="cancelled", ended_ns=end, updated_ns=end)
        return TaskFinished(
            event_id=self._id("finished"),
            time_ns=end,
            task=self.view,
            notes=(reason,),
            outcome="cancelled",
            duration_s=max(0.0, (end - self.view.started_ns) / 1e9),
            error_type="SpanvisorEvicted",
            error_message=reason,
        )
