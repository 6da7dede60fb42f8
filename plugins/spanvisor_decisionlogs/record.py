"""What one decision says as an OpenTelemetry log event. Pure: no I/O, no OTel.

:func:`decision_record` maps a :class:`~spanvisor.events.HumanIntervention`
(applied or refused) to a :class:`DecisionRecord`: the event name, a short
readable body, a severity, the attributes, and the task's trace and root span
ids, so a backend shows the record on the task's trace. ``otlp.py`` turns it
into an SDK log record.

Names: standard where the OpenTelemetry semantic conventions have one, ours
(``spanvisor.*``) where they have none.

Standard:

* ``gen_ai.agent.id``, ``gen_ai.agent.name``: the agent whose task (or
  request) was decided; ``gen_ai.tool.name``: the tool of the action the
  request asked to run. From the GenAI registry
  (github.com/open-telemetry/semantic-conventions-genai,
  ``model/gen-ai/registry.yaml``; Development stability).
* ``user.id``, ``user.name``: the person who decided (the general registry's
  ``user`` namespace: "unique identifier of the user", "short name").
* The record's own fields: ``event_name`` (OTLP ``LogRecord.event_name``),
  ``trace_id`` and ``span_id`` (the task's root span), severity.

Ours, because no standard one exists: the decision itself. The GenAI
registry, and ``opentelemetry-semantic-conventions`` 0.66b2 as installed,
define no attribute for a person's approval or rejection of a tool call.
The nearest is the GenAI *guardrail* proposal (``docs/gen-ai/gen-ai-security.md``
in the same repository, Development, unreleased): ``gen_ai.guardrail.verdict.type``
(allow, deny, modify, warn, escalate) and ``gen_ai.guardrail.action.type`` on a
``run_guardrail`` span. It is not used: it describes an automated component
judging content inside a GenAI operation (its required attributes name a
target type and the operation ``run_guardrail``), not a person's vote on a
request that several people may have to approve, and it may still change.
``spanvisor.decision.outcome`` borrows its words where they mean the same
(``allow``, ``deny``) so one query reads both.

Left out on purpose: ``gen_ai.operation.name`` (no value means "a person
decided"; ``execute_tool`` would claim a tool ran) and
``gen_ai.tool.call.arguments`` (they may hold secrets; the digest names them
and the audit trail keeps them).

Text is telemetry, not markup: nothing is escaped, but every text is cut
to :data:`TEXT_LIMIT` characters and lone surrogates are replaced (protobuf
refuses them, and one bad string would fail the whole batch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from spanvisor.events import HumanIntervention

EVENT_NAME = "spanvisor.decision"
TEXT_LIMIT = 1000
# OpenTelemetry SeverityNumber values (the log data model), as plain ints so
# this module needs no SDK.
SEVERITY_INFO = 9
SEVERITY_WARN = 13

AttributeValue = str | bool | int

_HEX = frozenset("0123456789abcdefABCDEF")
_VERBS = {
    "approve": "approved",
    "reject": "rejected",
    "cancel": "cancelled",
    "retry": "retried",
    "acknowledge": "acknowledged",
}


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision as a log event, ready for any OTel logs API."""

    event_name: str
    body: str
    severity_number: int
    severity_text: str
    # (key, value) pairs in a stable order; no None values.
    attributes: tuple[tuple[str, AttributeValue], ...]
    time_ns: int
    # The task's trace and root span, as the ints OTel uses; None when the
    # view has no trace (a task this process does not track).
    trace_id: int | None
    span_id: int | None

    @property
    def attrs(self) -> dict[str, AttributeValue]:
        return dict(self.attributes)


def outcome_of(event: HumanIntervention) -> str:
    """``allow`` (an approve in force), ``require_approval`` (an approve that
    is one vote of several still short of the quorum), ``deny`` (a reject, or
    any refused decision: nothing was done), else the action itself
    (``cancel``, ``retry``, ``acknowledge``)."""
    d = event.decision
    if event.outcome != "applied" or d.action == "reject":
        return "deny"
    if d.action == "approve":
        short = event.votes_needed > 0 and event.votes < event.votes_needed
        return "require_approval" if short else "allow"
    return d.action


def decision_record(event: HumanIntervention) -> DecisionRecord:
    d, v, req = event.decision, event.task, event.request
    applied = event.outcome == "applied"
    bare = v.trace_id == ""  # a view with only ids: its agent id is a placeholder
    by = d.actor_name or d.actor_id
    a: dict[str, AttributeValue | None] = {
        # standard
        "gen_ai.agent.id": (None if bare else v.agent_id) or (req.agent if req else None),
        "gen_ai.agent.name": None if bare else v.agent_name,
        "gen_ai.tool.name": tool_of(req.action if req else None) or tool_of(d.edited),
        "user.id": d.actor_id,
        "user.name": d.actor_name,
        # ours
        "spanvisor.decision.id": event.event_id,
        "spanvisor.decision.action": d.action,
        "spanvisor.decision.outcome": outcome_of(event),
        "spanvisor.decision.applied": applied,
        "spanvisor.decision.by": by,
        "spanvisor.decision.verified": d.verified,
        "spanvisor.decision.groups": ",".join(d.groups) or None,
        "spanvisor.decision.proof": d.proof,
        "spanvisor.decision.break_glass": True if d.break_glass else None,
        "spanvisor.decision.source": d.source,
        "spanvisor.decision.code": None if applied else (event.code or "denied"),
        "spanvisor.decision.reason": event.reason,
        "spanvisor.decision.comment": d.comment,
        "spanvisor.decision.edited": d.edited is not None,
        "spanvisor.decision.grant_id": d.grant_id,
        "spanvisor.decision.votes": event.votes if event.votes_needed > 0 else None,
        "spanvisor.decision.votes_needed": event.votes_needed if event.votes_needed > 0 else None,
        # The task's id as its view has it: a decision made on a button from before
        # its root renamed it names the former id, which goes alongside (issue 66).
        "spanvisor.task.id": v.task_id or d.task_id,
        "spanvisor.task.former_id": v.former_id,
        "spanvisor.task.name": v.task_name,
        "spanvisor.run.id": d.run_id or v.run_id,
        "spanvisor.approval.id": d.approval_id,
        "spanvisor.approval.digest": d.digest or (req.digest if req else None),
        "spanvisor.approval.question": req.question if req else None,
        "spanvisor.approval.requester": req.requester if req else None,
        "spanvisor.approval.approvers_from": ",".join(req.approvers_from) or None if req else None,
    }
    attributes = tuple(
        (key, _text(value) if isinstance(value, str) else value)
        for key, value in a.items()
        if value is not None and value != ""
    )
    trace_id = hex_id(v.trace_id, 32)
    return DecisionRecord(
        event_name=EVENT_NAME,
        body=_text(body_of(event)),
        severity_number=SEVERITY_INFO if applied else SEVERITY_WARN,
        severity_text="INFO" if applied else "WARN",
        attributes=attributes,
        time_ns=d.time_ns or event.time_ns,
        trace_id=trace_id,
        # A span id means nothing without its trace.
        span_id=hex_id(v.root_span_id, 16) if trace_id else None,
    )


def body_of(event: HumanIntervention) -> str:
    """One readable line: ``alice approved a1 on task T (1 of 2)``, or for a
    refused one ``bob could not approve a1 on task T: <why>``."""
    d = event.decision
    by = d.actor_name or d.actor_id
    target = f"{d.approval_id} on task {d.task_id}" if d.approval_id else f"task {d.task_id}"
    if event.outcome != "applied":
        return f"{by} could not {d.action} {target}: {event.reason or event.code or 'refused'}"
    line = f"{by} {_VERBS.get(d.action, d.action)} {target}"
    if d.edited is not None:
        line += " with edited arguments"
    if d.grant_id:
        line += f" by grant {d.grant_id}"
    if event.votes_needed > 0:
        line += f" ({event.votes} of {event.votes_needed})"
    return line


def tool_of(action: str | None) -> str | None:
    """The ``tool`` of an action's canonical JSON (``{"tool", "arguments"}``),
    or None when there is none or it does not parse."""
    if not action:
        return None
    try:
        doc = json.loads(action)
    except (ValueError, RecursionError):
        return None
    tool = doc.get("tool") if isinstance(doc, dict) else None
    return tool if isinstance(tool, str) and tool else None


def hex_id(value: str, digits: int) -> int | None:
    """A trace (32 digits) or span (16) id from its hex form; None when it is
    absent, malformed or all zeros (an invalid id in OTel)."""
    # int() alone would take "0x…", "_" and blanks.
    if len(value) != digits or not _HEX.issuperset(value):
        return None
    return int(value, 16) or None


def _text(value: str) -> str:
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= TEXT_LIMIT else value[: TEXT_LIMIT - 1] + "…"
