"""A request asked again under an approval id its run already holds.

Anyone holding the OTLP token can send spans, so a copy of an open request
is not the agent's word: it may come from someone who wants fewer people
to approve it, or no requester excluded. The first copy a run's record
holds stands. A copy with other content (its digest differs: another
question, details or action) is refused and the refusal kept in the
record; a copy with the same content may only *raise* what the request
needs (more people, a requester named, a permit key, approver groups where
there were none), never lower it: raising can only make an approval
harder to get, so it needs no proof of who sent it.

Pure: a record in, a changed record and a verdict out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spanvisor.canonical import MAX_APPROVERS
from spanvisor.events import ApprovalRequest

# Refusals a run's record keeps (the newest); more are counted, not kept.
MAX_REFUSED = 20

Verdict = Literal["same", "raised", "refused"]


@dataclass(frozen=True, slots=True)
class Reasked:
    """What a copy of a known request did: nothing (``same``), raised its
    requirement (``raised``, the stored request in ``stored``), or was
    refused for other content (``refused``, why in ``reason``)."""

    verdict: Verdict
    stored: dict[str, Any]
    reason: str = ""


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def raised(known: Mapping[str, Any], req: ApprovalRequest) -> dict[str, Any]:
    """``known`` with what ``req`` asks more of it, and nothing it asks less."""
    out = dict(known)
    people = max(_int(known.get("approvers"), 1), min(max(req.approvers, 1), MAX_APPROVERS))
    if people != _int(known.get("approvers"), 1):
        out["approvers"] = people
    if not known.get("requester") and req.requester:
        out["requester"] = req.requester  # someone named who may not approve it
    if not known.get("permit_key") and req.permit_key:
        out["permit_key"] = req.permit_key  # only the holder of that secret consumes it
    if not known.get("approvers_from") and req.approvers_from:
        # Anyone's approvals counted; now only these groups' (fewer people). A
        # second list is not compared: another list may as well widen it.
        out["approvers_from"] = list(req.approvers_from)
    return out


def reask(known: Mapping[str, Any], req: ApprovalRequest) -> Reasked:
    """The verdict on ``req``, a copy of the stored request ``known``."""
    if str(known.get("digest") or "") != req.digest:
        why = (
            f"request {req.approval_id} asked again with other content (digest {req.digest[:12]}, "
            f"first {str(known.get('digest') or '')[:12]}): the first stands"
        )
        return Reasked("refused", dict(known), why)
    out = raised(known, req)
    return Reasked("raised" if out != dict(known) else "same", out)


def note_refusal(rec: dict[str, Any], req: ApprovalRequest, reason: str, at_ns: int) -> bool:
    """Keep a refused copy in the run's record (once per content: its
    replays change nothing). True when the record changed."""
    got = rec.get("refused")
    kept: list[Any] = got if isinstance(got, list) else []
    if any(
        isinstance(x, Mapping) and (x.get("approval_id"), x.get("digest")) == (req.approval_id, req.digest)
        for x in kept
    ):
        return False
    entry = {"approval_id": req.approval_id, "digest": req.digest, "requested_ns": req.requested_ns, "at_ns": at_ns}
    rec["refused"] = [*kept, {**entry, "reason": reason}][-MAX_REFUSED:]
    return True


def refusals_of(rec: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    got = rec.get("refused") if isinstance(rec, Mapping) else None
    return [dict(x) for x in got if isinstance(x, Mapping)] if isinstance(got, list) else []


__all__ = ["MAX_REFUSED", "Reasked", "Verdict", "note_refusal", "raised", "reask", "refusals_of"]
