"""A run's decisions and requests as the shared record keeps them (plain
dicts, JSON in the state store), and back: a stored value that is
malformed reads as None, never an exception."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from spanvisor.canonical import MAX_APPROVERS
from spanvisor.events import ApprovalRequest, Decision

_FIELDS = frozenset(f.name for f in dataclasses.fields(Decision))
_REQ_FIELDS = tuple(f.name for f in dataclasses.fields(ApprovalRequest))  # a request is kept whole


def decision_to_dict(d: Decision) -> dict[str, Any]:
    return dataclasses.asdict(d)


def decision_from_dict(x: Mapping[str, Any]) -> Decision | None:
    """A stored decision; None for anything malformed (never raises)."""
    try:
        d = Decision(**{k: v for k, v in x.items() if k in _FIELDS})
        d = dataclasses.replace(d, groups=tuple(str(g) for g in d.groups or ()))
    except (TypeError, ValueError):
        return None
    ok = isinstance(d.intervention_id, str) and isinstance(d.task_id, str) and isinstance(d.time_ns, int)
    return d if ok and d.action in ("approve", "reject", "cancel", "retry", "acknowledge") else None


def request_to_dict(r: ApprovalRequest) -> dict[str, Any]:
    out = {k: getattr(r, k) for k in _REQ_FIELDS}
    out["options"], out["approvers_from"] = list(r.options), list(r.approvers_from)
    return out


def request_from_dict(x: Any) -> ApprovalRequest | None:
    if not isinstance(x, Mapping):
        return None
    try:
        return ApprovalRequest(
            approval_id=str(x["approval_id"]),
            question=str(x["question"]),
            options=tuple(str(o) for o in x.get("options") or ("approve", "reject")),
            timeout_s=float(x["timeout_s"]) if x.get("timeout_s") is not None else None,
            requested_ns=int(x.get("requested_ns") or 0),
            digest=str(x.get("digest") or ""),
            agent=str(x.get("agent") or ""),
            details=str(x["details"]) if x.get("details") is not None else None,
            action=str(x["action"]) if x.get("action") is not None else None,
            approvers=min(max(int(x.get("approvers") or 1), 1), MAX_APPROVERS),
            requester=str(x["requester"]) if x.get("requester") is not None else None,
            permit_key=str(x["permit_key"]) if x.get("permit_key") else None,
            approvers_from=tuple(str(w) for w in x.get("approvers_from") or ()),
            policy_version=_opt(x.get("policy_version")),
            required_by=_opt(x.get("required_by")),
            policy_denied=_opt(x.get("policy_denied")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _opt(value: Any) -> str | None:
    return str(value) if value is not None else None


__all__ = ["decision_from_dict", "decision_to_dict", "request_from_dict", "request_to_dict"]
