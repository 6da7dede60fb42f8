"""A run's record in the shared store, and the rules a decision meets there.

A *run* is one task root span: key (trace id, root span id), id
:func:`spanvisor.events.run_id_of`. Its record holds what every replica must
agree on before a person's decision is applied: the run's state (running,
finished, failed, lost), its approval requests (open, decided or expired,
each with the digest of its question) and the decisions recorded on it. The
control log (:mod:`.log`) reads and writes it in one compare-and-set, so a
decision and an expiry racing for one request cannot both win.

Everything here is pure: a record in, a changed record and a verdict out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from spanvisor.control import floors, quorum, reasked
from spanvisor.control.records import decision_from_dict, decision_to_dict, request_from_dict, request_to_dict
from spanvisor.display.readable import decided
from spanvisor.events import ApprovalRequest, Decision, TaskView, question_digest

# Most decisions one run keeps; beyond, new ones are refused (a runaway script).
MAX_PER_RUN = 200
# Most requests one run keeps (open and closed).
MAX_REQUESTS = 100
# Why a decision was refused, as a code kept in the audit (docs/reference/interventions.md).
RefusalCode = Literal[
    "unknown_task",
    "unknown_request",
    "already_decided",
    "expired",
    "finished",
    "not_failed",
    "still_running",
    "not_approver",
    "digest_mismatch",
    "not_approved",
    "consumed",
    "wrong_agent",
    "wrong_key",
    "full",
    "denied",
    # quorum.RefusalCode: the rules of who approves and what an edit changes
    "own_request",
    "bad_edit",
    "unverified",
    "already_voted",
    "not_in_group",
    "reason_required",
    # the control API's, before a decision is judged: no break-glass group configured
    "break_glass_off",
    # the central policy's (control/floors.py): it denies the request, or now requires more than was approved
    "policy_denied",
    "policy_changed",
]
RunState = Literal["running", "finished", "failed", "lost"]
RequestState = Literal["open", "decided", "expired"]


def run_key(task_id: str, run_id: str) -> str:
    """The store key of a run: under its task's id, so pruning the task
    removes it with the task's other keys."""
    return f"{task_id}/run/{run_id}"


def fits(req: ApprovalRequest, digest: str) -> bool:
    """Whether a decision carrying ``digest`` answers ``req`` as it stands.
    Besides the request's digest, a plain question (no details, no action)
    still takes the digest of its question and options that clients sent
    before digests covered the whole request: what they showed is all
    there is to it, and the decision names its task, run and approval id."""
    if digest == req.digest:
        return True
    return req.action is None and req.details is None and digest == question_digest(req.question, req.options)


def expires_ns(r: ApprovalRequest) -> int | None:
    return r.requested_ns + int(r.timeout_s * 1e9) if r.timeout_s and r.requested_ns else None


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a decision met in its run's record. ``outcome``: applied,
    duplicate (this very decision was recorded before), or refused with a
    ``code`` and a ``reason`` a person can read."""

    outcome: Literal["applied", "duplicate", "refused"]
    code: RefusalCode | None = None
    reason: str | None = None
    prior: Decision | None = None
    request: ApprovalRequest | None = None
    # An approve of a request several people must approve: the count with it,
    # and the count needed; it decides the request only when they meet.
    votes: int = 0
    votes_needed: int = 0

    @property
    def decides(self) -> bool:
        return self.votes >= self.votes_needed


def new_record(view: TaskView) -> dict[str, Any]:
    return {
        "v": 0,
        "task_id": view.task_id,
        "run_id": view.run_id,
        "trace_id": view.trace_id,
        "root_span_id": view.root_span_id,
        "agent_id": view.agent_id,
        "task_name": view.task_name,  # with repo: what the central policy's task rules read
        "repo": view.repo,
        "state": "running",
        "outcome": None,
        "started_ns": view.started_ns,
        "ended_ns": None,
        "requests": {},
        "items": [],
    }


# What a cancel applied after its run's end answers (agent_ends).
AGENT_ENDED = (
    "cancelled after its end ({outcome}), which may have been its agent's word alone: "
    "whatever still runs under the task is stopped (a session's gate denies its later tool calls)"
)
# Most starter keys a run's record keeps (tracking.launcherend): one is the
# rule, two already say an agent named its own.
MAX_KEYS = 4


def keys_of(rec: Mapping[str, Any]) -> list[str]:
    """The starter keys the run's start records named, on any replica."""
    got = rec.get("keys")
    return [k for k in got if isinstance(k, str)] if isinstance(got, list) else []


def agent_ends(rec: Mapping[str, Any]) -> bool:
    """Whether a cancel still applies to the run after it ended, because
    its end may have been its agent's word alone: the end the agent can send,
    marked complete, with the OTLP token every agent holds, while its CLI
    goes on.

    - A coding-agent session the launcher did not start (``session``): only
      the system gate, keying it before answering its first call, makes its
      end the gate's word; without the gate the agent can key its session
      itself and end it with its own proof, and the record cannot tell the
      two apart. Its gate (the hook's look at the control API) denies the
      session's later calls; after a real end there is nothing left to stop.
    - A keyed run (``keys``) whose end no replica proved (``proved``): behind
      a Collector that routes records and spans apart, or sprays them, the
      start record naming the key reached one replica and the end another,
      where an end needs no proof.
    - A keyed run whose start records named two keys, on one replica or two:
      the launcher's and one the agent named so as to end the run with its
      own proof wherever the launcher's key was not held.

    The launcher stops its CLI on such a cancel. A launched task (or the
    Python helper's) ended with its one key's proof ended by its starter's
    word, which the agent cannot forge; any other task has no gate or
    launcher a cancel could stop. Records written before these facts hold
    none of them: as before."""
    if rec.get("session"):
        return True
    keys = keys_of(rec)
    return bool(keys) and (len(keys) > 1 or not rec.get("proved"))


def decisions_of(rec: Mapping[str, Any] | None) -> list[Decision]:
    items = rec.get("items") if isinstance(rec, Mapping) else None
    if not isinstance(items, list):
        return []
    return [d for d in (decision_from_dict(x) for x in items if isinstance(x, Mapping)) if d is not None]


def votes_of(raw_request: Mapping[str, Any]) -> list[Decision]:
    """The approvals counted so far on a request several people must approve."""
    got = raw_request.get("votes")
    items = got if isinstance(got, list) else []
    return [d for d in (decision_from_dict(x) for x in items if isinstance(x, Mapping)) if d is not None]


def requests_of(rec: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    reqs = rec.get("requests") if isinstance(rec, Mapping) else None
    return {k: dict(v) for k, v in reqs.items() if isinstance(v, Mapping)} if isinstance(reqs, Mapping) else {}


def state_of(rec: Mapping[str, Any] | None) -> RunState | None:
    s = rec.get("state") if isinstance(rec, Mapping) else None
    return s if s in ("running", "finished", "failed", "lost") else None


def is_open(req: Mapping[str, Any], now_ns: int) -> bool:
    if req.get("state") != "open":
        return False
    r = request_from_dict(req)
    end = expires_ns(r) if r is not None else None
    return end is None or now_ns < end


def open_requests(rec: Mapping[str, Any] | None, now_ns: int) -> list[ApprovalRequest]:
    out = [request_from_dict(r) for r in requests_of(rec).values() if is_open(r, now_ns)]
    return sorted((r for r in out if r is not None), key=lambda r: (r.requested_ns, r.approval_id))


# --- changes (each returns True when the record changed) --------------------


Offered = Literal["added", "raised", "same", "refused", "ignored"]


def offer_request(rec: dict[str, Any], req: ApprovalRequest, now_ns: int = 0) -> Offered:
    """Register a request. The first copy of an approval id stands
    (:mod:`.reasked`): a copy with other content is refused, and kept in
    the record as refused; one with the same content only raises what the
    request needs. ``ignored``: a new request the run cannot take (full,
    or ended)."""
    reqs = requests_of(rec)
    known = reqs.get(req.approval_id)
    if known is not None:
        got = reasked.reask(known, req)
        if got.verdict == "refused":
            reasked.note_refusal(rec, req, got.reason, now_ns or req.requested_ns)
            return "refused"
        if got.verdict == "raised":
            reqs[req.approval_id] = got.stored
            rec["requests"] = reqs
        return got.verdict
    if len(reqs) >= MAX_REQUESTS or state_of(rec) != "running":
        return "ignored"
    # One the central policy denies is decided at once: rejected by its rule.
    fresh = {**request_to_dict(req), "state": "open"}
    reqs[req.approval_id] = floors.record_denied(rec, req, req.requested_ns) if req.policy_denied else fresh
    rec["requests"] = reqs
    return "added"


def add_request(rec: dict[str, Any], req: ApprovalRequest, now_ns: int = 0) -> bool:
    """:func:`offer_request`; True when the record changed (a refusal is
    kept in it)."""
    return offer_request(rec, req, now_ns) in ("added", "raised", "refused")


def close_request(rec: dict[str, Any], approval_id: str, state: RequestState, at_ns: int, why: str) -> bool:
    reqs = requests_of(rec)
    req = reqs.get(approval_id)
    if req is None or req.get("state") != "open":
        return False
    reqs[approval_id] = {**req, "state": state, "closed_ns": at_ns, "why": why}
    rec["requests"] = reqs
    return True


def expire_due(rec: dict[str, Any], now_ns: int) -> list[str]:
    """Close as expired every open request whose timeout has passed."""
    out = []
    for aid, req in requests_of(rec).items():
        if req.get("state") == "open" and not is_open(req, now_ns):
            close_request(rec, aid, "expired", now_ns, "its timeout passed")
            out.append(aid)
    return out


def finish(rec: dict[str, Any], outcome: str, at_ns: int) -> list[str]:
    """The run ended: its state, and every open request closed as expired."""
    state: RunState = "failed" if outcome == "error" else "lost" if outcome == "lost" else "finished"
    rec["state"], rec["outcome"], rec["ended_ns"] = state, outcome, at_ns
    out = []
    for aid in list(requests_of(rec)):
        if close_request(rec, aid, "expired", at_ns, f"the task ended ({outcome})"):
            out.append(aid)
    return out


def _prior(items: list[Decision], d: Decision) -> Decision | None:
    for p in items:
        if p.intervention_id == d.intervention_id:
            return p
        if d.action in ("approve", "reject"):
            if p.action in ("approve", "reject") and p.approval_id == d.approval_id:
                return p
        elif p.action == d.action:
            return p
    return None


def who(d: Decision) -> str:
    return f"<@{d.actor_id}>" if d.source == "slack" else (d.actor_name or d.actor_id)


def cancel_of(decisions: Sequence[Decision]) -> dict[str, Any] | None:
    """Who asked the run to stop, and why (the control API's ``cancel``)."""
    d = next((d for d in decisions if d.action == "cancel"), None)
    return (
        None
        if d is None
        else {"by": d.actor_name or d.actor_id, "comment": d.comment, "time_ns": d.time_ns, "source": d.source}
    )


def describe(prior: Decision) -> str:
    """ "already approved by @alice" (Slack renders <@U…> as the user's name)."""
    return f"already {decided(prior.action)} by {who(prior)}"


def _again(rec: Mapping[str, Any], prior: Decision, place: int) -> Judgement:
    """This very decision was recorded before: its retry is told so, with what
    it answered and, for a vote, its count (``place``; 0: the decision)."""
    req = request_from_dict(requests_of(rec).get(prior.approval_id or ""))
    n = req.approvers if req is not None and req.approvers > 1 and prior.action == "approve" else 0
    n = 0 if prior.break_glass else n
    why = f"already applied: {prior.intervention_id} was recorded before ({decided(prior.action)} by {who(prior)})"
    return Judgement("duplicate", None, f"{why}; nothing changed", prior, req, (place or n) if n else 0, n)


def judge(rec: Mapping[str, Any], d: Decision, now_ns: int) -> Judgement:
    """Whether ``d`` applies to this run as it stands (nothing changed)."""
    items = decisions_of(rec)
    prior = _prior(items, d)
    if prior is not None and prior.intervention_id == d.intervention_id:
        return _again(rec, prior, 0)
    state = state_of(rec) or "running"
    if d.action in ("approve", "reject"):
        raw = requests_of(rec).get(d.approval_id or "")
        req = request_from_dict(raw) if raw is not None else None
        if raw is None or req is None:
            return Judgement("refused", "unknown_request", f"the task asked no approval {d.approval_id!r} in this run")
        if req.policy_denied and d.action == "approve":  # no person, grant or broken glass overrides it
            why = f"the central policy denies this (rule {floors.rule_of(req)} of {req.policy_version}): "
            return Judgement("refused", "policy_denied", why + req.policy_denied, None, req)
        earlier = votes_of(raw)  # a vote sent again: counted, even on a request closed since
        place = next((i for i, v in enumerate(earlier, 1) if v.intervention_id == d.intervention_id), 0)
        if place:
            return _again(rec, earlier[place - 1], place)
        if prior is not None:
            return Judgement("refused", "already_decided", describe(prior), prior, req)
        if raw.get("state") == "expired" or (raw.get("state") == "open" and not is_open(raw, now_ns)):
            return Judgement(
                "refused", "expired", f"that request has expired ({raw.get('why') or 'timed out'})", None, req
            )
        if raw.get("state") != "open":
            return Judgement("refused", "already_decided", "that request is already decided", None, req)
        if state != "running":
            return Judgement("refused", "expired", f"the task has already ended ({rec.get('outcome')})", None, req)
        if d.digest is not None and not fits(req, d.digest):
            why = "the question or its action changed since it was shown: look at the request again"
            return Judgement("refused", "digest_mismatch", why, None, req)
        if d.action == "reject":  # anyone's reject ends it
            return Judgement("applied", request=req)
        if (no := quorum.refusal(req, earlier, d)) is not None:
            return Judgement("refused", no[0], no[1], None, req)
        many = req.approvers > 1 and not d.break_glass  # glass broken: this one approve decides
        return Judgement(
            "applied", request=req, votes=len(earlier) + 1 if many else 0, votes_needed=req.approvers if many else 0
        )
    if prior is not None:
        return Judgement("refused", "already_decided", describe(prior), prior)
    if d.action == "cancel":
        if state != "running" and not agent_ends(rec):
            return Judgement("refused", "finished", f"the task has already finished ({rec.get('outcome')})")
        if state != "running":
            return Judgement("applied", reason=AGENT_ENDED.format(outcome=rec.get("outcome")))
        return Judgement("applied")
    # retry, acknowledge: a run that failed (or whose agent was lost)
    if state == "running":
        return Judgement("refused", "still_running", "the task is still running")
    if state == "finished":
        return Judgement(
            "refused", "not_failed", f"only a failed task can be {decided(d.action)} (it is {rec.get('outcome')})"
        )
    return Judgement("applied")


def apply(rec: dict[str, Any], d: Decision, now_ns: int) -> Judgement:
    """:func:`judge`, and when applied, the decision recorded (and its request
    closed as decided). An expired request found open is closed here too."""
    v = judge(rec, d, now_ns)
    if v.code == "expired" and d.approval_id:
        close_request(rec, d.approval_id, "expired", now_ns, "its timeout passed")
    if v.outcome != "applied":
        return v
    raw = rec.get("items")
    items: list[Any] = raw if isinstance(raw, list) else []
    if len(items) >= MAX_PER_RUN:
        return Judgement("refused", "full", "this task holds too many decisions")
    if not v.decides:  # a vote: kept on its request, which stays open
        reqs = requests_of(rec)
        raw_req = reqs[d.approval_id or ""]
        reqs[d.approval_id or ""] = {**raw_req, "votes": [*(raw_req.get("votes") or []), decision_to_dict(d)]}
        rec["requests"] = reqs
        return v
    rec["items"] = [*items, decision_to_dict(d)]
    if d.action in ("approve", "reject") and d.approval_id:
        close_request(rec, d.approval_id, "decided", d.time_ns, d.intervention_id)
    return v


__all__ = [
    "AGENT_ENDED",
    "MAX_KEYS",
    "MAX_PER_RUN",
    "Judgement",
    "Offered",
    "Permit",
    "RefusalCode",
    "RequestState",
    "RunState",
    "add_request",
    "agent_ends",
    "apply",
    "cancel_of",
    "close_request",
    "decision_from_dict",
    "decision_to_dict",
    "decisions_of",
    "describe",
    "expire_due",
    "expires_ns",
    "finish",
    "fits",
    "judge",
    "keys_of",
    "new_record",
    "offer_request",
    "open_requests",
    "request_from_dict",
    "request_to_dict",
    "requests_of",
    "run_key",
    "state_of",
    "votes_of",
    "who",
]


@dataclass(frozen=True, slots=True)
class Permit:
    """Whether an action may run now on the strength of an approval:
    ``permitted`` once, for the action whose digest the approval names."""

    permitted: bool
    reason: str
    code: RefusalCode | None = None
    digest: str | None = None
