"""The central policy in a run's record: a request it denies, and the
version in force when a person decides and where the approval is used.

* A request the central policy denies (:attr:`ApprovalRequest.policy_denied`)
  is recorded decided: rejected by the policy's rule (:func:`policy_decision`),
  so that the agent reads the rejection and no person, grant or broken
  glass can approve it.
* When a person decides, the version in force applies again
  (:func:`refloor`): a request asked under an older version needs what the
  current one requires (never less than it asked), and is denied if the
  current one denies it.
* Where the approval is used (:func:`still_permits`), the current version
  judges the action about to run (the one approved: the request's, or the
  arguments an approver set): an approval given under one version does not
  permit under a stricter one. The version is not bound into the digest,
  so an unrelated change of the policy leaves what people approved valid,
  and the agent's side, which cannot know the server's version, computes
  the same digest.

Pure: a record in, the record changed and a verdict out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from spanvisor.control import quorum
from spanvisor.control.records import decision_to_dict, request_from_dict, request_to_dict
from spanvisor.events import ApprovalRequest, Decision, stable_id
from spanvisor.gate.requirement import Floor, Requirement, raised
from spanvisor.gate.rules import server_facts

# Who the policy's own decisions are recorded as.
SOURCE = "policy"


def rule_of(req: ApprovalRequest) -> str:
    return (req.required_by or "central:policy").removeprefix("central:")


def policy_decision(req: ApprovalRequest, task_id: str, run_id: str) -> Decision:
    """The central policy's rejection of a request it denies (stable: one
    per request, whichever process records it)."""
    return Decision(
        intervention_id=stable_id("policy-denied", task_id, run_id, req.approval_id),
        task_id=task_id,
        action="reject",
        actor_id=f"central:{rule_of(req)}",
        time_ns=req.requested_ns,
        approval_id=req.approval_id,
        actor_name=f"rule {rule_of(req)} of policy {req.policy_version}",
        comment=req.policy_denied,
        source=SOURCE,
        run_id=run_id,
        digest=req.digest,
        verified=True,
        proof=SOURCE,
    )


def record_denied(rec: dict[str, Any], req: ApprovalRequest, at_ns: int) -> dict[str, Any]:
    """The stored form of a request the policy denies (decided), its
    rejection added to the run's decisions."""
    d = policy_decision(req, str(rec.get("task_id") or ""), str(rec.get("run_id") or ""))
    got = rec.get("items")
    items: list[Any] = got if isinstance(got, list) else []
    if not any(isinstance(x, Mapping) and x.get("intervention_id") == d.intervention_id for x in items):
        rec["items"] = [*items, decision_to_dict(d)]
    return {**request_to_dict(req), "state": "decided", "closed_ns": at_ns, "why": d.intervention_id}


def requirement(floor: Floor, rec: Mapping[str, Any], req: ApprovalRequest, action: Any) -> Requirement:
    """What ``floor`` requires of ``req`` with ``action`` (parsed) in this run;
    a failure to tell is a denial."""
    try:
        agent = req.agent or str(rec.get("agent_id") or "")
        name, repo = rec.get("task_name"), rec.get("repo")
        facts = server_facts(
            agent,
            req.requester,
            str(rec.get("task_id") or ""),
            name if isinstance(name, str) else None,
            repo if isinstance(repo, str) else None,
        )
        return floor.requirement(action if isinstance(action, Mapping) else None, facts)
    except Exception as exc:  # never no requirement
        return Requirement("deny", rule="error", reason=f"the central policy could not be applied ({exc!r})")


def refloor(rec: dict[str, Any], approval_id: str | None, floor: Floor | None, now_ns: int) -> bool:
    """Apply the version in force to the open request ``approval_id`` when
    it was asked under another (or none); whether the record changed."""
    import json

    raws = rec.get("requests")
    raw = raws.get(approval_id or "") if isinstance(raws, Mapping) else None
    req = request_from_dict(raw)
    if floor is None or req is None or not isinstance(raw, Mapping) or raw.get("state") != "open":
        return False
    version = floor.version
    if req.policy_version == version:
        return False
    need = requirement(floor, rec, req, json.loads(req.action) if req.action else None)
    asked = req.required_by if req.required_by and not req.required_by.startswith("central:") else "request"
    got = raised(req.approvers, req.approvers_from, asked, need)
    new = dataclasses.replace(
        req,
        approvers=got.approvers,
        approvers_from=got.approvers_from,
        policy_version=need.version or version,
        required_by=f"central:{got.required_by}" if got.by_floor else req.required_by,
        policy_denied=got.denied,
    )
    stored = record_denied(rec, new, now_ns) if new.policy_denied else {**raw, **request_to_dict(new)}
    rec["requests"] = {**raws, approval_id: stored}  # type: ignore[dict-item]
    return True


def still_permits(
    rec: Mapping[str, Any], req: ApprovalRequest, approved: Any, d: Decision, votes: list[Decision], floor: Floor
) -> tuple[str, str] | None:
    """Why the approval ``d`` (with the ``votes`` before it) of ``req`` may
    not let ``approved`` (the action about to run, parsed) run under the
    version in force (code, reason), or None."""
    need = requirement(floor, rec, req, approved)
    where = f"policy {need.version}" if need.version else "the central policy"
    if need.verdict == "deny":
        why = need.reason or "denied"
        return "policy_denied", f"{where} now denies this action (rule {need.rule}): {why}"
    if need.verdict == "allow" or d.break_glass:
        return None  # break-glass overrides an ask, never a deny
    if need.approvers <= 1 and not need.approvers_from:
        return None
    bar = dataclasses.replace(req, approvers=need.approvers, approvers_from=need.approvers_from)
    people = {quorum.person(v) for v in (*votes, d) if v.verified and v.action == "approve" and quorum.counts(bar, v)}
    if len(people) >= need.approvers:
        return None
    whom = f" from {quorum.from_words(need.approvers_from)}" if need.approvers_from else ""
    n = need.approvers
    return "policy_changed", (
        f"{where} (rule {need.rule}) requires {n} {'approval' if n == 1 else 'approvals'}{whom} of people "
        f"whose identity is proven; this approval has {len(people)}: ask again"
    )


__all__ = ["SOURCE", "policy_decision", "record_denied", "refloor", "requirement", "rule_of", "still_permits"]
