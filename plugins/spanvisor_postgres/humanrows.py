"""Rows for people's decisions, task results and log tails: pure code, no I/O.

A :class:`HumanIntervention` gives one ``human_interventions`` row keyed by
its intervention id. A ``TaskFinished`` gives one ``task_logs`` row per
record of its log tail, keyed by ``(task_id, pos)``. Everything that came
from agents or people goes through the same sanitising as the other rows,
and what was changed is noted in the row's ``notes``.
"""

from __future__ import annotations

from typing import Any

from spanvisor.canonical import canonical_json
from spanvisor.display.approval import action_json
from spanvisor.events import HumanIntervention, TaskFinished, TaskView

from .sanitize import ID_LIMIT, clean_text, json_text

INTERVENTION_COLUMNS = (
    "intervention_id",
    "task_id",
    "at",
    "actor",
    "action",
    "comment",
    "attributes",
    "outcome",
    "reason",
    "approval_id",
    "source",
    "actor_name",
    "agent_id",
    "time_ns",
    "known",
    "notes",
    "run_id",
    "question",
    "question_digest",
    "refusal",
)
LOG_COLUMNS = (
    "task_id",
    "pos",
    "event_id",
    "agent_id",
    "at",
    "time_ns",
    "level",
    "logger",
    "message",
    "notes",
)
# Most log records kept per task (the newest ones): the tracker bounds the
# tail already; this bounds what one task can put in the table whatever a
# producer sends.
MAX_LOG_ROWS = 50
LOG_MESSAGE_LIMIT = 2_000
RESULT_LIMIT = 50


# ``attributes``: whether who decided was proven (Slack's signed user, a
# person's own token) or only claimed; in the row's hash (the decision log).
_IDENTITY = {True: '{"verified": true}', False: '{"verified": false}'}


def _attributes(event: HumanIntervention, notes: list[str]) -> str:
    """Who decided, proven or claimed; and, when there is more to it, the
    count of a request several people approve, the action asked next to the
    one an edit approved instead, the grant that decided, and the person a
    Slack user is."""
    d, req = event.decision, event.request
    more: dict[str, Any] = {}
    if event.votes_needed > 1:
        more.update(votes=event.votes, votes_needed=event.votes_needed)
    if d.edited is not None:
        # As people are shown them: secrets masked (the digests bind the raw ones).
        more.update(edited=shown(d.edited), asked=shown(req.action if req is not None else None))
    if d.grant_id is not None:
        more["grant_id"] = d.grant_id
    if d.person is not None and d.person != d.actor_id:  # a Slack user the deciders file names
        more["person"] = d.person
    if req is not None and req.requester:
        more["requester"] = req.requester
    # The groups proven for the decider and how they were proven; whose approvals
    # the request counted; an approve that broke glass (its reason: the comment).
    if d.groups:
        more["groups"] = list(d.groups)
    if d.proof is not None:
        more["proof"] = d.proof
    if req is not None and req.approvers_from:
        more["approvers_from"] = list(req.approvers_from)
    if req is not None and req.policy_version:  # the central policy's version, and what set the requirement
        more.update(policy_version=req.policy_version, required_by=req.required_by)
    if d.break_glass:
        more["break_glass"] = True
    if not more:
        return _IDENTITY[d.verified]
    return json_text({"verified": d.verified, **more}, "attributes", notes)


def shown(action: str | None) -> str | None:
    """An action's canonical JSON with its secrets masked (spanvisor.display.approval)."""
    doc = action_json(action)
    return canonical_json(doc) if doc is not None else None


def _is_bare(view: TaskView) -> bool:
    # A view with ids only: the task was not known where the decision was taken.
    return view.trace_id == ""


def intervention_record(event: HumanIntervention, ts: Any) -> tuple[Any, ...]:
    """``ts``: ns to timestamptz (``rows.ts``, passed in: rows imports this module)."""
    d = event.decision
    notes: list[str] = list(event.notes)
    agent = None if _is_bare(event.task) else clean_text(event.task.agent_id, "agent_id", notes, ID_LIMIT)
    record = (
        clean_text(d.intervention_id, "intervention_id", notes, ID_LIMIT),
        clean_text(d.task_id, "task_id", notes, ID_LIMIT),
        ts(d.time_ns),
        clean_text(d.actor_id, "actor", notes, ID_LIMIT),
        clean_text(d.action, "action", notes, ID_LIMIT),
        clean_text(d.comment, "comment", notes),
        _attributes(event, notes),
        event.outcome,
        clean_text(event.reason, "reason", notes),
        clean_text(d.approval_id, "approval_id", notes, ID_LIMIT),
        clean_text(d.source, "source", notes, ID_LIMIT),
        clean_text(d.actor_name, "actor_name", notes, ID_LIMIT),
        agent,
        d.time_ns,
        event.known,
    )
    req = event.request
    asked = (
        clean_text(d.run_id or event.task.run_id or None, "run_id", notes, ID_LIMIT),
        clean_text(req.question if req is not None else None, "question", notes),
        clean_text(req.digest if req is not None else d.digest, "question_digest", notes, ID_LIMIT),
        event.code,
    )
    return (*record, json_text(notes, "notes", []), *asked)


def log_records(event: TaskFinished, ts: Any) -> list[tuple[Any, ...]]:
    """The newest :data:`MAX_LOG_ROWS` records of the tail, oldest first."""
    tail = event.log_tail[-MAX_LOG_ROWS:]
    out: list[tuple[Any, ...]] = []
    v = event.task
    for pos, line in enumerate(tail):
        notes: list[str] = []
        record = (
            clean_text(v.task_id, "task_id", notes, ID_LIMIT),
            pos,
            clean_text(event.event_id, "event_id", notes, ID_LIMIT),
            clean_text(v.agent_id, "agent_id", notes, ID_LIMIT),
            ts(line.time_ns),
            line.time_ns,
            clean_text(line.level, "level", notes, ID_LIMIT) or "",
            clean_text(line.logger, "logger", notes, ID_LIMIT),
            clean_text(line.message, "message", notes, LOG_MESSAGE_LIMIT) or "",
        )
        out.append((*record, json_text(notes, "notes", [])))
    return out


def results_json(view: TaskView, notes: list[str]) -> str:
    """The view's results as the ``agent_tasks.results`` jsonb text."""
    if not view.results:
        return "[]"
    items: list[dict[str, Any]] = []
    for r in view.results[:RESULT_LIMIT]:
        value: Any = r.value
        if not isinstance(value, str | int | float | bool):
            value = str(value)
        items.append({"name": r.name, "value": value, "unit": r.unit})
    if len(view.results) > RESULT_LIMIT:
        notes.append(f"results: {len(view.results)} kept to {RESULT_LIMIT}")
    return json_text(items, "results", notes)
