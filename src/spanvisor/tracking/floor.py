"""The central policy's floor, applied where a request becomes an approval
request (:func:`spanvisor.tracking.approvals.request_from`): every way an
agent asks (``request_approval``, the coding agents' hook, ``spanvisor
emit approval``) arrives here, in the agent's process and behind ``serve``
alike.

A request may ask for more than the central policy requires, never less:
its approvers are raised to the rule's, whose approvals count narrowed to
the rule's ``from``, and a central ``deny`` makes it a request no one may
approve (:attr:`ApprovalRequest.policy_denied`: the control log records
it decided, rejected by the policy). The version and the rule that set
what it needs are recorded on it. None of this is in the digest: what a
person is shown stays what they approve.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from spanvisor.events import ApprovalRequest
from spanvisor.gate.requirement import ATTR_RULE, Floor, Requirement, raised
from spanvisor.gate.rules import server_facts
from spanvisor.spans import sanitize as sz

# What a request that no rule asked says it was required by.
BY_REQUEST = "request"


def asked_by(attrs: Mapping[str, Any], notes: list[str]) -> str:
    """Who asked the request's own requirement: the hook's local rule
    (``policy:<name>``), else the request itself."""
    got = sz.name(attrs.get(ATTR_RULE), ATTR_RULE, notes)
    return got if got and got.startswith("policy:") else BY_REQUEST


def requirement(
    floor: Floor, req: ApprovalRequest, task_id: str, agent: str, task_name: str | None, repo: str | None
) -> Requirement:
    """What the central policy requires of ``req``; a failure to tell is a
    denial (never no requirement)."""
    try:
        action = json.loads(req.action) if req.action else None
        facts = server_facts(req.agent or agent, req.requester, task_id, task_name, repo)
        return floor.requirement(action if isinstance(action, Mapping) else None, facts)
    except Exception as exc:  # a bug must not open what the policy closes
        why = f"the central policy could not be applied ({type(exc).__name__}); denied"
        return Requirement("deny", rule="error", reason=why, version=_version(floor))


def _version(floor: Floor) -> str:
    try:
        return floor.version
    except Exception:
        return "unknown"


def apply(req: ApprovalRequest, need: Requirement, by: str) -> ApprovalRequest:
    """``req`` as ``need`` raises it (``by``: who asked what it asked)."""
    got = raised(req.approvers, req.approvers_from, by, need)
    return dataclasses.replace(
        req,
        approvers=got.approvers,
        approvers_from=got.approvers_from,
        policy_version=need.version,
        required_by=f"central:{got.required_by}" if got.by_floor else by,
        policy_denied=got.denied,
    )


__all__ = ["BY_REQUEST", "apply", "asked_by", "requirement"]
