"""One request's coding-agent records, read into live facts and spans.

:func:`claim` is called by the logs decoder on every named record; it
takes those of a known CLI (by exact event name) and files them by
session. :meth:`Batch.finish` then turns each session's records into what
the rest of spanvisor already reads:

* live-channel facts (:class:`~spanvisor.spans.live.LiveFact`) about the
  session's task root, whose ids are derived (:mod:`.ids`: from the
  launcher's ``spanvisor.task.id`` and, when it gave one, its
  ``spanvisor.task.run``, else from the session id): its start the
  first time the session is heard of here (named by the launcher, else its
  first prompt, else "<CLI> session <id>") and a heartbeat at its latest
  record;
* ended spans stamped with that root, in the order the records happened:
  one per model call (GenAI usage keys, the CLI's reported cost), one per
  tool call (``execute_tool``, named ``Tool(command)``) and one per warning
  (an API error, a denied tool call: an ``agent.checkpoint`` event) or
  answer at the terminal (a checkpoint that sets the status back to
  ``working``: the task waited on the person), with
  span ids derived from the record, so a resent record is the same span
  (:mod:`.spans`).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from spanvisor.clis import registry
from spanvisor.clis.records import LIFE, MAX_NAME, Reading, clean
from spanvisor.gate.taskids import is_run
from spanvisor.receiver.codingagents import launched
from spanvisor.receiver.codingagents.ids import session_task
from spanvisor.receiver.codingagents.sessions import SESSIONS, Session
from spanvisor.receiver.decode import any_value
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import LiveFact

# The CLIs whose log records are read (by exact event name), and the
# records spanvisor's launcher writes of what OpenCode and Cline print.
CLIS: tuple[ModuleType, ...] = (
    *(m for m in registry.record_readers() if not getattr(m, "FROM_SPANS", False)),
    launched,
)
_BY_NAME: dict[str, ModuleType] = {name: m for m in CLIS for name in m.EVENTS}
# The readers whose CLI names its records otherwise than by their event name.
_NAMERS: tuple[ModuleType, ...] = tuple(m for m in CLIS if hasattr(m, "event_name"))
# Resource attributes the launcher (spanvisor run) or the user may set.
TASK_ID_KEY = "spanvisor.task.id"
# The launcher's run of the task (each run its own root: a task id given
# again after its run ended is a new run, never that run read as late).
TASK_RUN_KEY = "spanvisor.task.run"
TASK_NAME_KEY = "spanvisor.task.name"
AGENT_KEYS = ("spanvisor.agent", cv.AGENT_NAME)
_RESOURCE_KEYS = frozenset({cv.SERVICE_NAME, TASK_ID_KEY, TASK_RUN_KEY, TASK_NAME_KEY, *AGENT_KEYS})
MAX_ATTRIBUTES = 128
MAX_SESSIONS_PER_REQUEST = 1_000
# What becomes a span, in the order it happened: calls, steps and warnings
# travel together, so a warning is never shown before the call it followed.
_AS_SPANS = frozenset({"call", "tool", "warning", "answer"})


def event_of(rec: Any, name: str) -> str | None:
    """The full event name of a record a CLI sent, or None: exact names
    only (Claude Code's full name is its body, its ``event.name`` short)."""
    if name in _BY_NAME:
        return name
    # Claude Code's full name is its body (its event.name short); Codex fills
    # the event name with a source location and keeps its own in event.name.
    for reader in _NAMERS:
        if (full := reader.event_name(rec, name)) is not None:
            return str(full)
    return None


@dataclass(slots=True)
class SessionRecord:
    time_ns: int
    event: str
    part: str  # what tells this record from the session's others: sequence, prompt id
    reading: Reading


@dataclass(slots=True)
class Heard:
    """One session's records in this request."""

    cli: ModuleType
    service: str
    task_id: str
    trace_id: str
    root_id: str
    session_id: str
    resource: dict[str, Any]
    records: list[SessionRecord] = field(default_factory=list)


@dataclass(slots=True)
class Batch:
    heard: dict[tuple[str, str], Heard] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    records: int = 0
    forgotten: int = 0
    # Filled by finish(): the model and tool calls as spans (spans.py).
    calls: list[tuple[Heard, SessionRecord]] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.unreadable[reason] = self.unreadable.get(reason, 0) + 1

    def take(self, rec: Any, event: str, resource: Any) -> None:
        self.records += 1
        cli = _BY_NAME[event]
        attrs: dict[str, Any] = {}
        for kv in rec.attributes[:MAX_ATTRIBUTES]:
            attrs[kv.key] = any_value(kv.value)
        t = rec.time_unix_nano or rec.observed_time_unix_nano or time.time_ns()
        seq = attrs.get("event.sequence")
        part = (
            str(seq)
            if isinstance(seq, (int, str)) and seq != ""
            else str(attrs.get("prompt.id") or attrs.get("prompt_id") or "")
        )
        self.add(cli, event, attrs, resource_of(resource), t, part)

    def add(
        self, cli: ModuleType, event: str, attrs: Mapping[str, Any], resource: Mapping[str, Any], t: int, part: str
    ) -> None:
        """One record of ``cli`` read by its reader for ``event`` (a log
        record's event name, or what a span says it is: :mod:`.fromspans`),
        filed by session; ``resource``: :func:`resource_of`; ``part``: what
        tells this record from the session's others at the same time."""
        res = dict(resource)
        if not cli.DECODES_RESOURCE:
            res = {k: _decoded(v) if k != cv.SERVICE_NAME else v for k, v in res.items()}
        service = res.get(cv.SERVICE_NAME)
        service = service if isinstance(service, str) and service else next(iter(sorted(cli.SERVICES)))
        session_id = next((v for k in cli.SESSION_KEYS if isinstance(v := attrs.get(k), str) and v), None)
        launched = res.get(TASK_ID_KEY)
        launched = launched if isinstance(launched, str) and launched else None
        if session_id is None and launched is None:
            self.skip("no_session_id")
            return
        # The run counts beside the launcher's task id only (anything but a
        # run's nonce is none: the task id's own ids, as before runs).
        run = res.get(TASK_RUN_KEY) if launched else None
        task_id, trace_id, root_id = session_task(service, session_id or "", launched, run if is_run(run) else None)
        key = (trace_id, root_id)
        heard = self.heard.get(key)
        if heard is None:
            if len(self.heard) >= MAX_SESSIONS_PER_REQUEST:
                self.skip("too_many_sessions")
                return
            heard = self.heard[key] = Heard(cli, service, task_id, trace_id, root_id, session_id or task_id, res)
        try:
            reading = cli.EVENTS[event](attrs)
        except Exception:  # a reader is total by design; a CLI's surprise costs the detail only
            self.skip("unreadable_attributes")
            reading = LIFE
        heard.records.append(SessionRecord(t, event, part, reading))

    def finish(self, live: list[LiveFact]) -> None:
        """Each session's facts, in time order, the start first."""
        for heard in self.heard.values():
            heard.records.sort(key=lambda r: r.time_ns)
            live.extend(self._facts(heard))
            self.calls.extend((heard, r) for r in heard.records if r.reading.kind in _AS_SPANS)

    def _facts(self, h: Heard) -> list[LiveFact]:
        resource: Mapping[str, Any] = {cv.SERVICE_NAME: h.service}
        first, last = h.records[0].time_ns, h.records[-1].time_ns

        def fact(name: str, t: int, attrs: dict[str, Any]) -> LiveFact:
            return LiveFact(h.trace_id, h.root_id, name, t, attrs, resource)

        out: list[LiveFact] = []
        named = _launcher_name(h.resource)
        prompt = next((r.reading.text for r in h.records if r.reading.kind == "prompt" and r.reading.text), None)
        known = SESSIONS.get(h.trace_id, h.root_id)
        if known is None:
            name = named or prompt or f"{h.cli.CLI} session {h.session_id[:8]}"
            if SESSIONS.put(h.trace_id, h.root_id, Session(name, bool(named or prompt))):
                self.forgotten += 1
            out.append(fact(cv.LIVE_TASK_START, first, self._identity(h, name)))
        elif not known.named and (named or prompt):
            # The prompt came after the start (a later batch): name it now.
            known.name, known.named = named or prompt or known.name, True
            out.append(fact(cv.LIVE_TASK_UPDATE, first, {cv.TASK_NAME: known.name}))
        out.append(fact(cv.LIVE_HEARTBEAT, last, {}))
        return out

    @staticmethod
    def _identity(h: Heard, name: str) -> dict[str, Any]:
        agent = next((v for k in AGENT_KEYS if isinstance(v := h.resource.get(k), str) and v), None)
        return {
            cv.TASK_NAME: name,
            cv.TASK_ID: h.task_id,
            cv.AGENT_NAME: clean(agent, MAX_NAME) or h.service,
            cv.GEN_AI_CONVERSATION: h.session_id,
        }


def resource_of(resource: Any) -> dict[str, Any]:
    """What a record's resource may say of its task (OTLP ``Resource``)."""
    return {kv.key: any_value(kv.value) for kv in resource.attributes if kv.key in _RESOURCE_KEYS}


def _decoded(value: Any) -> Any:
    """A value of ``OTEL_RESOURCE_ATTRIBUTES`` percent-decoded, as the OTel
    specification asks an SDK to (for a CLI whose SDK does not)."""
    return urllib.parse.unquote(value) if isinstance(value, str) and "%" in value else value


def _launcher_name(resource: Mapping[str, Any]) -> str | None:
    return clean(resource.get(TASK_NAME_KEY), MAX_NAME)


def claim(rec: Any, name: str, resource: Any, out: Any) -> bool:
    """Take ``rec`` when a coding-agent CLI sent it (True): it is then not a
    log line. ``out`` is the request's decoded logs (its ``coding`` batch is
    made here). Never raises: a record that cannot be read is counted."""
    event = event_of(rec, name)
    if event is None:
        return False
    batch: Batch | None = out.coding
    if batch is None:
        batch = out.coding = Batch()
    try:
        batch.take(rec, event, resource)
    except Exception:  # what a CLI version sends must never fail the request
        batch.skip("unreadable_record")
    return True


__all__ = ["Batch", "claim", "event_of", "resource_of"]
