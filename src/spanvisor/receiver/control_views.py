"""What the control API shows of requests, votes and budgets (JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from spanvisor.control import runs
from spanvisor.control.quorum import still_needed
from spanvisor.control.runs import who
from spanvisor.display.approval import action_json
from spanvisor.display.readable import answer_command
from spanvisor.events import ApprovalRequest, Decision, TaskView


def approval_json(r: ApprovalRequest) -> dict[str, Any]:
    return {
        "approval_id": r.approval_id,
        "question": r.question,
        "options": list(r.options),
        "timeout_s": r.timeout_s,
        "requested_ns": r.requested_ns,
        "digest": r.digest,
        "expires_ns": runs.expires_ns(r),
        # What the approval binds to besides the question (docs/reference/interventions.md),
        # as a person is shown it: the action with its secrets masked (the
        # digest binds the raw one, which the agent presents at the permit check).
        "agent": r.agent,
        "details": r.details,
        "action": action_json(r.action),
        # Who must approve: this many distinct verified people, never the requester.
        "approvers": r.approvers,
        "requester": r.requester,
        # Whose approvals count ("group:sre", "alice"; empty: anyone's).
        "approvers_from": list(r.approvers_from),
        # The central policy's version it was judged under, and what set its requirement (docs/reference/policy.md).
        "policy_version": r.policy_version,
        "required_by": r.required_by,
        "policy_denied": r.policy_denied,
    }


def open_json(item: Mapping[str, Any], now_ns: int) -> dict[str, Any] | None:
    """One entry of the open list, with its age and the command that answers it."""
    r = runs.request_from_dict(item)
    task_id, run_id, agent = item.get("task_id"), item.get("run_id"), item.get("agent_id")
    if r is None or not isinstance(task_id, str) or not isinstance(run_id, str):
        return None
    doc = approval_json(r)
    doc.update(
        task_id=task_id,
        run_id=run_id,
        agent_id=agent if isinstance(agent, str) else "unknown",
        age_s=max(0.0, (now_ns - r.requested_ns) / 1e9) if r.requested_ns else None,
        answer=answer_command(task_id, run_id, r.approval_id, r.digest),
    )
    return doc


def budget_json(v: TaskView) -> dict[str, Any]:
    return {
        "cost_usd": v.cost_usd,
        "budget_usd": v.budget_usd,
        "tokens": v.input_tokens + v.output_tokens,
        "budget_tokens": v.budget_tokens,
        "unpriced_calls": v.unpriced_calls,
    }


def votes_json(votes: list[Decision], req: ApprovalRequest | None = None) -> dict[str, Any]:
    """Who approved an open request so far, the arguments they approved
    instead of the asked ones (a later approval must approve the same), and
    what it still waits for (``1 more from sre``)."""
    edit = votes[0].edited if votes else None
    doc = {"approved_by": [who(v) for v in votes], "approved_edit": json.loads(edit) if edit else None}
    if req is not None:
        doc["still_needed"] = still_needed(req, len(votes))
    return doc


__all__ = ["approval_json", "budget_json", "open_json", "votes_json"]
