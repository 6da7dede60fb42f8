"""The check where an action runs, in a run's record: whether the action
about to run is the one approved, and the approval consumed when it is.

The action approved is the one the request asked, or, when the approver
edited its arguments, the edited one: the agent runs what the person
approved, and nothing else. Either way the approval is used once. Pure: a
record in, the record changed and a :class:`~spanvisor.control.runs.Permit`
out (the control log writes it in one compare-and-set).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from spanvisor.canonical import approval_digest, check_action
from spanvisor.control import floors
from spanvisor.control.runs import Permit, decisions_of, fits, request_from_dict, requests_of, votes_of, who
from spanvisor.events import ApprovalRequest
from spanvisor.gate.requirement import Floor


def digest_for(rec: Mapping[str, Any], req: ApprovalRequest, action: Mapping[str, Any] | None) -> str:
    """The digest ``req`` would have had with ``action`` (checked already)."""
    return approval_digest(
        agent=req.agent,
        task=str(rec.get("task_id") or ""),
        run=str(rec.get("run_id") or ""),
        approval_id=req.approval_id,
        question=req.question,
        options=req.options,
        details=req.details,
        action=action,
    )


def permit(
    rec: dict[str, Any],
    approval_id: str,
    action: Mapping[str, Any] | None,
    now_ns: int,
    by: str,
    key: str | None = None,
    floor: Floor | None = None,
) -> Permit:
    """Check ``action`` against the approval ``approval_id`` of this run and,
    when it is the action approved, consume the approval (recorded in the
    run's ``consumed``): a second check of the same approval is refused. A
    request asked with a permit key is consumed only with its secret ``key``.
    With the central policy's ``floor``, the version in force must still
    let that action run on the approvals given (:func:`.floors.still_permits`)."""
    raw = requests_of(rec).get(approval_id)
    req = request_from_dict(raw) if raw is not None else None
    if req is None:
        return Permit(False, f"the task asked no approval {approval_id!r} in this run", "unknown_request")
    try:
        checked = check_action(action) if action is not None else None
    except ValueError as exc:
        return Permit(False, f"not a valid action: {exc}", "digest_mismatch")
    want = digest_for(rec, req, checked)
    d = next((x for x in decisions_of(rec) if x.action in ("approve", "reject") and x.approval_id == approval_id), None)
    approved = req.digest
    if d is not None and d.action == "approve" and d.edited is not None:
        approved = digest_for(rec, req, check_action(json.loads(d.edited)))
    if want != approved:
        what = "the arguments the approver set" if approved != req.digest else "the action the request asked for"
        return Permit(False, f"that is not {what}", "digest_mismatch", want)
    if d is None or d.action != "approve":
        what = "rejected" if d is not None else "not decided"
        return Permit(False, f"approval {approval_id} was {what}", "not_approved", want)
    if d.digest is not None and not fits(req, d.digest):
        return Permit(False, "the approval was given for another request", "digest_mismatch", want)
    consumed = rec.get("consumed")
    used = dict(consumed) if isinstance(consumed, Mapping) else {}
    if approval_id in used:
        return Permit(False, f"approval {approval_id} was already used", "consumed", want)
    if req.permit_key and (key is None or hashlib.sha256(key.encode()).hexdigest() != req.permit_key):
        why = "only the process that asked consumes this approval (its request carries a permit key)"
        return Permit(False, why, "wrong_key", want)
    if floor is not None:
        ran = json.loads(d.edited) if d.edited is not None else checked
        votes = votes_of(requests_of(rec).get(approval_id) or {})
        if (no := floors.still_permits(rec, req, ran, d, votes, floor)) is not None:
            return Permit(False, no[1], no[0], want)  # type: ignore[arg-type]
    used[approval_id] = {"at_ns": now_ns, "digest": want, "by": by, "decision": d.intervention_id}
    rec["consumed"] = used
    return Permit(True, f"approved by {who(d)}", None, want)


__all__ = ["digest_for", "permit"]
