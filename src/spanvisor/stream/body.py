"""The public JSON body of a domain event: one schema for every consumer.

The event stream's ``data:`` and the webhook sink's request body are this
same JSON, so a tool that reads one reads the other. Every body has
``type`` (``spanvisor.<kind>``) and ``v`` (:data:`SCHEMA_VERSION`, bumped
only for an incompatible change; fields are only ever added within a
version). An intervention's body is the webhook's (ids, the decision, the
person's comment, the question it answered, the task's names and status,
whether it was applied or refused and why);
a task event's body carries the task as of that event (:func:`task_json`)
and the fields of its kind, as the codec writes them.

Agent and human text go in as plain JSON strings: the reader is a program,
not a chat, so nothing is escaped beyond JSON. Encoded as compact ASCII JSON,
so text with lone surrogates still encodes.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from typing import Any, cast

from spanvisor.codec import EVENT_TYPES, event_to_dict
from spanvisor.display.approval import action_json
from spanvisor.events import DiffUpdated, Event, HumanIntervention, TaskCorrected, TaskView
from spanvisor.redaction import clip_middle

SCHEMA_VERSION = 1
INTERVENTION_TYPE = "spanvisor.intervention"
QUESTION_LIMIT = 500
# The envelope's own fields; a kind's fields never replace them.
_COMMON = ("v", "kind", "event_id", "time_ns", "task", "notes")


def kind_of(event: Event) -> str:
    """``task_started``, ``checkpoint``, ``context_warning`` … ``intervention``:
    the SSE ``event:`` name and the ``?kind=`` filter's vocabulary."""
    return _KIND_OF[type(event)]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# By class, so naming an event's kind is one look-up (it is done per event).
_KIND_OF: dict[type[Any], str] = {
    cls: "intervention" if cls is HumanIntervention else _snake(n) for n, cls in EVENT_TYPES.items()
}
# Every kind, as ``kind_of`` names them.
KINDS: tuple[str, ...] = tuple(sorted(_KIND_OF.values()))


# Cached: a task's start time repeats in every one of its events' bodies.
@functools.lru_cache(maxsize=4096)
def rfc3339(time_ns: int) -> str:
    """UTC with milliseconds, ``2026-11-22T14:30:00.123Z``."""
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body(event: Event) -> dict[str, Any]:
    """The public body of any event."""
    if isinstance(event, HumanIntervention):
        return intervention_body(event)
    v = event.task
    out: dict[str, Any] = {
        "type": f"spanvisor.{kind_of(event)}",
        "v": SCHEMA_VERSION,
        "event_id": event.event_id,
        "task_id": v.task_id,
        "run_id": v.run_id or None,
        "seq": v.seq,
        "time": rfc3339(event.time_ns),
        "notes": list(event.notes),
        "task": task_json(v),
    }
    if isinstance(event, DiffUpdated):
        # Its size, not its text: a diff is up to 256 KB, and the stream keeps
        # thousands of events in memory and a day of them in PostgreSQL.
        out.update(digest=event.digest, files=event.files, clipped=event.clipped, chars=len(event.diff))
        return out
    for name, value in event_to_dict(event).items():
        if name not in _COMMON:
            out[name] = value
    if isinstance(event, TaskCorrected):  # a late span's facts, each in this same shape
        out["facts"] = [body(cast(Event, f)) for f in event.facts]
    return out


def task_json(v: TaskView) -> dict[str, Any]:
    """The task as of one event: what a dashboard shows of it."""
    return {
        "agent_id": v.agent_id,
        "agent_name": v.agent_name,
        "task_name": v.task_name,
        "repo": v.repo,
        "branch": v.branch,
        "pull_request": v.pull_request,
        "status": v.status,
        "trace_id": v.trace_id or None,
        "root_span_id": v.root_span_id or None,
        "progress": v.progress,
        "step": v.step,
        "steps": list(v.steps),
        "message": v.message,
        "model": v.model,
        "input_tokens": v.input_tokens,
        "output_tokens": v.output_tokens,
        "cost_usd": v.cost_usd,
        "unpriced_calls": v.unpriced_calls,
        "context_tokens": v.context_tokens,
        "context_limit": v.context_limit,
        "budget_usd": v.budget_usd,
        "budget_tokens": v.budget_tokens,
        "stalled": v.stalled,
        "cancel_requested": v.cancel_requested,
        "provisional": v.provisional,
        "former_id": v.former_id,
        "approvals": [
            {
                "approval_id": r.approval_id,
                "question": _clip(r.question),
                "options": list(r.options),
                "digest": r.digest,
            }
            for r in v.approvals
        ],
        "results": [{"name": r.name, "value": r.value, "unit": r.unit} for r in v.results],
        "artifacts": [{"name": a.name, "uri": a.uri, "kind": a.kind} for a in v.artifacts],
        "started": rfc3339(v.started_ns) if v.started_ns else None,
        "ended": rfc3339(v.ended_ns) if v.ended_ns else None,
    }


def intervention_body(event: HumanIntervention) -> dict[str, Any]:
    """A decision: what the webhook sink POSTs and the stream sends.
    ``outcome`` is ``applied`` or ``denied`` (refused: nothing was done);
    a refused one carries ``code`` (spanvisor.control.runs.RefusalCode, e.g.
    ``expired``, ``already_decided``) and ``reason``."""
    d = event.decision
    v = event.task
    bare = v.trace_id == ""  # a view with only ids (see HumanIntervention)
    return {
        "type": INTERVENTION_TYPE,
        "v": SCHEMA_VERSION,
        "intervention_id": d.intervention_id,
        # A decision naming the id a task showed under before its root named its own: the task's id now.
        "task_id": v.task_id if v.former_id is not None and d.task_id == v.former_id else d.task_id,
        "action": d.action,
        "approval_id": d.approval_id,
        "actor": {"id": d.actor_id, "name": d.actor_name},
        "comment": d.comment,
        "time": rfc3339(d.time_ns),
        "source": d.source,
        "run_id": d.run_id or v.run_id or None,
        "request": None
        if event.request is None
        else {"question": _clip(event.request.question), "digest": event.request.digest},
        "task": {
            "agent_id": None if bare else v.agent_id,
            "task_name": v.task_name,
            "status": None if bare else v.status,
            "trace_id": v.trace_id or None,
            "former_id": v.former_id,
        },
        # Added after the fields above (a version only ever adds): whether the
        # decision took effect; a refused one says why, as a code and in words.
        "outcome": event.outcome,
        "code": (event.code or "denied") if event.outcome == "denied" else None,
        "reason": event.reason,
        # Added later still. ``decides``: false for an approve that is one
        # vote of several a request needs (``votes`` of ``votes_needed``): the
        # request is still open, nothing may run on it yet; false for a refused
        # decision (outcome ``denied``) too. Who decided, proven
        # or claimed; the arguments an approver set instead (the action that
        # may run); the standing grant that decided.
        "decides": decides(event),
        "votes": event.votes,
        "votes_needed": event.votes_needed,
        "verified": d.verified,
        "person": d.person,
        "edited": action_json(d.edited),  # secrets masked, as people are shown it
        "grant_id": d.grant_id,
        # Added later still: the groups proven for the decider, how they were
        # proven (token, oidc, slack), and an approve that broke glass.
        "groups": list(d.groups),
        "proof": d.proof,
        "break_glass": d.break_glass,
    }


def decides(event: HumanIntervention) -> bool:
    """Whether the decision settles what it names: an applied one does, but
    an approve that is one vote of several, short of the count; a refused
    one (outcome ``denied``) never does: nothing was done."""
    if event.outcome != "applied":
        return False
    return not (event.votes_needed > 1 and event.votes < event.votes_needed)


def _clip(text: str) -> str:
    """A question as people are shown it (redacted where it was read): its
    start and its end when long."""
    return clip_middle(text, QUESTION_LIMIT)


def encode(doc: dict[str, Any]) -> bytes:
    """Compact JSON; ASCII-only, so text with lone surrogates still encodes."""
    return json.dumps(doc, separators=(",", ":"), default=str).encode("ascii")


__all__ = [
    "INTERVENTION_TYPE",
    "KINDS",
    "QUESTION_LIMIT",
    "SCHEMA_VERSION",
    "body",
    "encode",
    "intervention_body",
    "kind_of",
    "rfc3339",
    "task_json",
]
