"""Approvals and human decisions in a task's state.

An agent asks with an ``agent.approval.request`` span event; the request stays
open (status ``awaiting_approval``) until either the agent notes the answer it
read back (``agent.approval.decision``: approve, reject or timed_out) or this
process records a person's decision on it (:func:`intervene`). Both close the
same request, so whichever comes first wins and the second changes nothing.
Decided ids are remembered, so a request re-read from a polled root does not
reopen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from spanvisor.canonical import (
    MAX_ACTION_BYTES,
    MAX_DETAILS,
    approval_digest,
    canonical_json,
    check_action,
    check_from,
    clamp_approvers,
)
from spanvisor.display.thread import EXPIRED_APPROVAL, UNANSWERED_APPROVAL
from spanvisor.events import (
    ApprovalRequest,
    Checkpoint,
    Decision,
    Event,
    HumanIntervention,
    InterventionOutcome,
    TaskView,
)
from spanvisor.gate.requirement import Floor
from spanvisor.redaction import clip_middle, redact
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking import floor as floors
from spanvisor.tracking import openers
from spanvisor.tracking.record import TaskRecord

# Most open requests a task holds, and decisions its view keeps.
MAX_OPEN = 20
MAX_DECISIONS = 5
DEFAULT_OPTIONS = ("approve", "reject")
# A question's characters a person is shown (start and end). Text is read
# up to MAX_SHOWN_INPUT characters, where the receiver's decoder cuts every
# string (receiver.vocabulary.MAX_STRING): a request reads the same in the
# agent's process and behind serve.
MAX_QUESTION = 500
MAX_SHOWN_INPUT = 64 * 1024


def shown(value: Any, key: str, notes: list[str], limit: int) -> str | None:
    """A question or details as every person and record is shown them:
    secrets masked (spanvisor.redaction), then, over ``limit`` characters,
    the start and the end with "… N characters …" between. The digest binds
    this text (what was shown) and the raw action."""
    if isinstance(value, str) and len(value) > MAX_SHOWN_INPUT:
        value = value[:MAX_SHOWN_INPUT]
    text = sz.text(value, key, notes, MAX_SHOWN_INPUT + 1)
    if text is None:
        return None
    text = redact(text)
    if len(text) > limit:
        sz.note(notes, key, f"{len(text):,} characters shown as their start and end ({limit:,})")
        text = clip_middle(text, limit)
    return text


_HEX = frozenset("0123456789abcdef")


def request_from(
    attrs: Any,
    time_ns: int,
    notes: list[str],
    task_id: str = "",
    run_id: str = "",
    floor: Floor | None = None,
    task: Any = None,
) -> ApprovalRequest | None:
    """The request an ``agent.approval.request`` event carries, with its
    digest in the run ``run_id`` of task ``task_id``; None without an id or
    with an action that is not a valid one (it could never be approved as
    asked: the agent's wait times out). With the central policy's
    ``floor``, it needs at least what the policy requires (:mod:`.floor`;
    ``task``: the task's working fields, its agent, name and repo)."""
    approval_id = sz.name(attrs.get(cv.APPROVAL_ID), cv.APPROVAL_ID, notes)
    if not approval_id:
        sz.note(notes, cv.EVENT_APPROVAL_REQUEST, f"no {cv.APPROVAL_ID}; ignored")
        return None
    question = shown(attrs.get(cv.APPROVAL_QUESTION), cv.APPROVAL_QUESTION, notes, MAX_QUESTION) or "Approve?"
    raw = attrs.get(cv.APPROVAL_OPTIONS)
    options: tuple[str, ...] = DEFAULT_OPTIONS
    if isinstance(raw, list | tuple) and raw:
        named = tuple(o for o in (sz.name(x, cv.APPROVAL_OPTIONS, notes) for x in raw[:5]) if o)
        options = named or DEFAULT_OPTIONS
    timeout = sz.number(attrs.get(cv.APPROVAL_TIMEOUT_S), cv.APPROVAL_TIMEOUT_S, notes)
    details = shown(attrs.get(cv.APPROVAL_DETAILS), cv.APPROVAL_DETAILS, notes, MAX_DETAILS)
    agent = sz.name(attrs.get(cv.APPROVAL_AGENT), cv.APPROVAL_AGENT, notes) or ""
    action: dict[str, Any] | None = None
    raw_action = attrs.get(cv.APPROVAL_ACTION)
    if isinstance(raw_action, str) and len(raw_action) > MAX_ACTION_BYTES:
        # Cut on its way here (or simply too large): refused for its size.
        why = f"over the {MAX_ACTION_BYTES:,} bytes a request may carry"
        sz.note(notes, cv.APPROVAL_ACTION, f"request {approval_id} refused ({why}); ignored")
        return None
    if raw_action is not None:
        try:
            action = check_action(json.loads(raw_action) if isinstance(raw_action, str) else None)
        except (ValueError, RecursionError) as exc:
            sz.note(
                notes, f"{cv.EVENT_APPROVAL_REQUEST} {approval_id}", f"{cv.APPROVAL_ACTION} refused ({exc}); ignored"
            )
            return None
    digest = approval_digest(
        agent=agent,
        task=task_id,
        run=run_id,
        approval_id=approval_id,
        question=question,
        options=options,
        details=details,
        action=action,
    )
    try:
        approvers_from = check_from(attrs.get(cv.APPROVAL_FROM))
    except ValueError as exc:
        sz.note(notes, f"{cv.EVENT_APPROVAL_REQUEST} {approval_id}", f"{cv.APPROVAL_FROM} refused ({exc}); ignored")
        return None
    approvers = clamp_approvers(attrs.get(cv.APPROVAL_APPROVERS), notes)
    requester = sz.name(attrs.get(cv.APPROVAL_REQUESTER), cv.APPROVAL_REQUESTER, notes)
    key = attrs.get(cv.APPROVAL_PERMIT_KEY)
    if key is not None and not (isinstance(key, str) and len(key) == 64 and set(key) <= _HEX):
        sz.note(
            notes,
            f"{cv.EVENT_APPROVAL_REQUEST} {approval_id}",
            f"{cv.APPROVAL_PERMIT_KEY} is not 64 hex digits; ignored",
        )
        key = None
    req = ApprovalRequest(
        permit_key=key,
        approvers=approvers,
        approvers_from=approvers_from,
        requester=requester or None,
        approval_id=approval_id,
        question=question,
        options=options,
        timeout_s=timeout if timeout is not None and timeout > 0 else None,
        requested_ns=time_ns,
        digest=digest,
        agent=agent,
        details=details,
        action=canonical_json(action) if action is not None else None,
    )
    if floor is None:
        return req
    agent_id, name, repo = (task.agent_id, task.task_name, task.repo) if task is not None else ("", None, None)
    need = floors.requirement(floor, req, task_id, agent_id, name, repo)
    return floors.apply(req, need, floors.asked_by(attrs, notes))


def on_request(st: TaskRecord, event_id: str, time_ns: int, attrs: Any, notes: list[str], who: str = "") -> list[Event]:
    """Like ``agent.checkpoint``, every request event is a Checkpoint, even one
    that changes nothing (a request already answered, or repeated): the
    events of a task's spans are the same whichever order the spans arrive
    in (a child's note of the answer may come before the root's request).
    ``who``: the identity its span claims (:mod:`.openers`)."""
    if st.finished:
        # A late span's request: nothing opens on a finished task, but the
        # agent did ask, and the audit trail keeps what it said.
        return [_checkpoint(st, event_id, time_ns, (), notes)]
    req = request_from(attrs, time_ns, notes, st.working.task_id, st.working.run_id, st.settings.floor, st.working)
    changed = _open(st, req)
    if req is not None and is_open(st, req.approval_id):
        st.approval_openers = openers.remember(st.approval_openers, req.approval_id, who)
    return [_checkpoint(st, event_id, time_ns, changed, notes)]


def _open(st: TaskRecord, req: ApprovalRequest | None) -> tuple[str, ...]:
    w = st.working
    if req is None or req.approval_id in st.approvals_closed:
        return ()
    open_ = w.approvals
    same = next((r for r in open_ if r.approval_id == req.approval_id), None)
    if (same is not None and _when(same) <= _when(req)) or (same is None and len(open_) >= MAX_OPEN):
        return ()
    # The earliest request of an id stands in this view, and the open ones go
    # by time, then id: the same tuple whatever order the requests arrived in.
    # (What a decision is judged by, the run's record, keeps the first copy it
    # was written and refuses one with other content: control.reasked.)
    others = tuple(r for r in open_ if r is not same)
    changes: dict[str, Any] = {"approvals": tuple(sorted((*others, req), key=_when))}
    status = st.fields.status_after(w, changes)
    if status != w.status:
        changes["status"] = status
    st.update(**changes)
    return tuple(changes)


def _when(r: ApprovalRequest) -> tuple[int, str]:
    return (r.requested_ns, r.approval_id)


def on_decision(
    st: TaskRecord, event_id: str, time_ns: int, attrs: Any, notes: list[str], who: str = ""
) -> list[Event]:
    """The agent's note of the answer it read (or of its own timeout); a
    Checkpoint even when the request was not open (see :func:`on_request`).
    Only a note from the task and session that opened the request closes
    it (:mod:`.openers`); another's is kept, marked ignored."""
    if st.finished:  # a late span's note: nothing to close, the fact stays
        return [_checkpoint(st, event_id, time_ns, (), notes)]
    approval_id = sz.name(attrs.get(cv.APPROVAL_ID), cv.APPROVAL_ID, notes)
    task_id = st.working.task_id
    if (
        approval_id
        and is_open(st, approval_id)
        and not openers.may_withdraw(st.approval_openers, approval_id, who, task_id)
    ):
        sz.note(notes, f"{cv.EVENT_APPROVAL_DECISION} {approval_id}", "from another task or session; ignored")
        ev = _checkpoint(st, event_id, time_ns, (), notes)
        return [replace(ev, attributes={openers.IGNORED_NOTE: approval_id})]
    changed = _close(st, approval_id) if approval_id else ()
    ev = _checkpoint(st, event_id, time_ns, changed, notes)
    if changed and attrs.get(cv.APPROVAL_OUTCOME) == "timed_out":
        # Nobody answered before the agent gave up: said in the thread (display/thread.py).
        return [replace(ev, attributes={UNANSWERED_APPROVAL: approval_id})]
    return [ev]


def intervene(st: TaskRecord, decision: Decision, notes: list[str], decides: bool = True) -> HumanIntervention:
    """A person's applied decision on an open task: its state after it. An
    approve that is one vote of several (``decides`` False) leaves its
    request open."""
    if decision.action in ("approve", "reject") and decision.approval_id:
        if decides:
            _close(st, decision.approval_id)
    elif decision.action == "cancel" and not st.working.cancel_requested:
        st.update(cancel_requested=True)
    if decides:  # a vote is not yet the answer: the parent message lists answers
        st.update(decisions=(*st.working.decisions, decision)[-MAX_DECISIONS:])
    t = st.next_time(decision.time_ns)
    return HumanIntervention(
        event_id=decision.intervention_id, time_ns=t, task=st.view, notes=tuple(notes), decision=decision
    )


def is_open(st: TaskRecord, approval_id: str) -> bool:
    return any(r.approval_id == approval_id for r in st.working.approvals)


def _close(st: TaskRecord, approval_id: str) -> tuple[str, ...]:
    """Close one request; the fields that changed (none if it was not open)."""
    st.approvals_closed = st.approvals_closed | {approval_id}
    if st.approval_openers:
        st.approval_openers.pop(approval_id, None)
    w = st.working
    left = tuple(r for r in w.approvals if r.approval_id != approval_id)
    if len(left) == len(w.approvals):
        return ()
    changes: dict[str, Any] = {"approvals": left}
    status = st.fields.status_after(w, changes)
    if status != w.status:
        changes["status"] = status
    st.update(**changes)
    return tuple(changes)


def _checkpoint(st: TaskRecord, event_id: str, time_ns: int, changed: tuple[str, ...], notes: list[str]) -> Checkpoint:
    t = st.next_time(time_ns)
    return Checkpoint(event_id=event_id, time_ns=t, task=st.view, notes=tuple(notes), source="event", changed=changed)


__all__ = [
    "DEFAULT_OPTIONS",
    "as_event",
    "catch_up",
    "expire",
    "find",
    "intervene",
    "is_open",
    "on_decision",
    "on_request",
    "request_from",
    "shown",
]


def as_event(
    open_states: Iterable[TaskRecord],
    closed_states: Iterable[TaskRecord],
    decision: Decision,
    outcome: InterventionOutcome,
    reason: str | None,
    *,
    request: ApprovalRequest | None = None,
    code: str | None = None,
    votes: int = 0,
    votes_needed: int = 0,
) -> HumanIntervention:
    """The decision as its run's event. Applied on a run open here, it
    changes the task's state (``known``); denied, or on a run that finished
    or is tracked elsewhere, it carries the last view known, or only ids."""
    notes: list[str] = []
    st = find(open_states, (), decision.task_id, decision.run_id)
    if st is not None and outcome == "applied" and not st.finished:
        return replace(
            intervene(st, decision, notes, votes >= votes_needed),
            request=request,
            votes=votes,
            votes_needed=votes_needed,
        )
    st = st or find((), closed_states, decision.task_id, decision.run_id)
    bare = TaskView(task_id=decision.task_id, trace_id="", root_span_id="", agent_id="unknown", run_id=decision.run_id)
    return replace(
        _detached(decision, st.view if st is not None else bare, outcome, reason, request, code),
        votes=votes,
        votes_needed=votes_needed,
    )


def find(
    open_states: Iterable[TaskRecord], closed_states: Iterable[TaskRecord], task_id: str, run_id: str = ""
) -> TaskRecord | None:
    """The state of the task with this id (and run, when given), open or
    just finished here."""
    for st in (*open_states, *closed_states):
        w = st.working
        if task_id in (w.task_id, w.former_id) and (not run_id or w.run_id == run_id):
            return st
    return None


def expire(st: TaskRecord, approval_id: str, now_ns: int) -> Checkpoint | None:
    """A request the server closed as expired (its timeout passed, and no
    answer came): closed here too, so its buttons go. None when not open."""
    if st.finished:
        return None
    changed = _close(st, approval_id)
    if not changed:
        return None
    t = st.next_time(now_ns)
    return Checkpoint(
        event_id=st.event_id("expired", approval_id),
        time_ns=t,
        task=st.view,
        source="state",
        changed=changed,
        attributes={EXPIRED_APPROVAL: approval_id},
    )


def _detached(
    decision: Decision,
    view: TaskView,
    outcome: InterventionOutcome,
    reason: str | None,
    request: ApprovalRequest | None,
    code: str | None,
) -> HumanIntervention:
    return HumanIntervention(
        event_id=decision.intervention_id,
        time_ns=max(decision.time_ns, view.updated_ns),
        task=view,
        decision=decision,
        outcome=outcome,
        reason=reason,
        known=False,
        request=request,
        code=code,
    )


def catch_up(st: TaskRecord, decision: Decision) -> Checkpoint | None:
    """A decision another process recorded and announced, applied to this
    process's state of the task: the view catches up (the request closes,
    the decision is listed) as a state checkpoint, not a second
    intervention. None when there is nothing to catch up."""
    if st.finished or any(d.intervention_id == decision.intervention_id for d in st.working.decisions):
        return None
    changed: tuple[str, ...] = ()
    if decision.action in ("approve", "reject") and decision.approval_id:
        changed = _close(st, decision.approval_id)
    elif decision.action == "cancel" and not st.working.cancel_requested:
        st.update(cancel_requested=True)
        changed = ("cancel_requested",)
    if not changed:
        return None
    st.update(decisions=(*st.working.decisions, decision)[-MAX_DECISIONS:])
    t = st.next_time(decision.time_ns)
    return Checkpoint(
        event_id=st.event_id("decision", decision.intervention_id),
        time_ns=t,
        task=st.view,
        source="state",
        changed=(*changed, "decisions"),
    )
