"""Who may approve a request, how many must, and what an edit may change.

A request may need several people (:attr:`ApprovalRequest.approvers`): each
approve before the last is a *vote*, kept on the request in the run's
record; the request is decided by the approve that completes the count (or
by any reject), and only that decision is one agents read back. Every vote
must come from a person whose identity was proven (Slack's signed user, a
person's own token): a name anyone can type cannot count as a second
person, and under a quorum a Slack user counts only when the deciders file
maps it to a person (else one person, by Slack and by token, would count
twice). The request's requester never approves it, alone or as a vote; so
a request that names one takes only proven approvals too (a typed name
cannot show it is not the requester's).

A request may name whose approvals count (:attr:`ApprovalRequest.approvers_from`:
``group:sre``, ``alice``): an approve from anyone else is refused
(``not_in_group``), and so is one whose identity is not proven (a group
is only ever the one proven for the decider: the deciders file's, the
identity provider's token's, Slack's user groups). An approve that breaks
glass (:attr:`Decision.break_glass`, allowed by the control API to members
of the break-glass group only) decides alone, whatever the count and
``from``, with a reason, never by the requester.

An approver may change the action's arguments (never its tool): the agent
receives the edited action, and the approval permits that action, not the
one asked. Votes on one request must agree on the arguments.

Everything here is pure.
"""

from __future__ import annotations

import json
from typing import Literal

from spanvisor.canonical import MAX_APPROVERS, canonical_json, check_action
from spanvisor.events import ApprovalRequest, Decision

# Why an approve may not count (besides the rules every decision meets).
RefusalCode = Literal["own_request", "bad_edit", "unverified", "already_voted", "not_in_group", "reason_required"]


def person(d: Decision) -> str:
    """One person, as far as the decision proves it: the deciders file's
    person when it names them (by token or Slack user id), else a Slack user
    id, which is another namespace than a name."""
    if d.person:
        return f"person:{d.person}"
    return f"slack:{d.actor_id}" if d.source == "slack" else f"person:{d.actor_id}"


def is_requester(d: Decision, requester: str | None) -> bool:
    if not requester:
        return False
    r = requester.strip().casefold()
    names = (d.actor_id, d.actor_name or "", d.person or "")
    return r in (n.strip().casefold() for n in names)


def group_of(entry: str) -> str | None:
    """The group a ``from`` entry names (``group:sre``), or None for a person."""
    return entry[6:] if entry.startswith("group:") else None


def counts(req: ApprovalRequest, d: Decision) -> bool:
    """Whether ``d``'s decider is one of those ``req.approvers_from`` names
    (always, when it names none): by a group proven for them, or by name."""
    if not req.approvers_from:
        return True
    groups = {g.casefold() for g in d.groups}
    names = {n.casefold() for n in (d.person, d.actor_id) if n}
    for entry in req.approvers_from:
        group = group_of(entry)
        if (group.casefold() in groups) if group is not None else (entry.casefold() in names):
            return True
    return False


def from_words(entries: tuple[str, ...]) -> str:
    """``sre or alice``: whom a request's approvals must come from."""
    names = [group_of(e) or e for e in entries]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0] if names else "anyone"


def still_needed(req: ApprovalRequest, votes: int) -> str:
    """``1 more from sre``: what an open request waits for ("" when nothing)."""
    more = max(0, req.approvers - votes)
    if not more:
        return ""
    return f"{more} more" + (f" from {from_words(req.approvers_from)}" if req.approvers_from else "")


def edit_error(req: ApprovalRequest, edited: str) -> str | None:
    """Why ``edited`` cannot stand for the request's action (None: it can)."""
    if req.action is None:
        return "the request names no action to edit"
    try:
        new = check_action(json.loads(edited))
    except (ValueError, RecursionError) as exc:
        return f"the edited action is not valid: {exc}"
    old = json.loads(req.action)
    if new.get("tool") != old.get("tool"):
        return f"an edit may change the arguments, not the tool ({old.get('tool')!r})"
    if canonical_json(new) != edited:
        return "the edited action is not in canonical JSON"
    return None


def refusal(req: ApprovalRequest, earlier: list[Decision], d: Decision) -> tuple[RefusalCode, str] | None:
    """Why the approve ``d`` may not count on ``req`` after the votes
    ``earlier`` (code, reason), or None."""
    if is_requester(d, req.requester):
        return "own_request", f"{req.requester} asked for this: someone else must approve it"
    if d.edited is not None and (why := edit_error(req, d.edited)) is not None:
        return "bad_edit", why
    if d.break_glass:
        if not d.verified or not d.person:
            return "unverified", "breaking glass needs a person whose identity is proven"
        if not (d.comment or "").strip():
            return "reason_required", "breaking glass needs a reason (--reason): it is posted and kept in the audit"
        return None
    if req.approvers <= 1 and not req.requester and not req.approvers_from:
        return None
    if not d.verified:
        # A name anyone can type proves neither a second person nor that the
        # requester is not the one approving, nor a group.
        need = f"{req.approvers} people" if req.approvers > 1 else f"someone other than {req.requester}"
        need = f"approvals from {from_words(req.approvers_from)}" if req.approvers_from else need
        return "unverified", (
            f"this request needs {need} whose identity is proven: decide from Slack, with a token of your "
            "own (`spanvisor decider-token NAME` makes one for serve's SPANVISOR_DECIDERS file; then approve "
            "with --token or SPANVISOR_DECIDE_TOKEN) or with your identity provider's (`spanvisor login`)"
        )
    if not counts(req, d):
        mine = f"your groups: {', '.join(d.groups)}" if d.groups else "no group is proven for you"
        return "not_in_group", (
            f"only approvals from {from_words(req.approvers_from)} count on this request "
            f"({d.person or d.actor_id} is not one of them; {mine})"
        )
    if req.approvers <= 1:
        return None
    if d.source == "slack" and not d.person:
        # A Slack user the deciders file does not name may be a person who
        # also holds a token: counted by user id, one person would be two.
        return "unverified", (
            f"this request needs {req.approvers} people, each named in the deciders file (SPANVISOR_DECIDERS): "
            "your Slack user is not mapped to a person there"
        )
    if any(person(v) == person(d) for v in earlier):
        more = req.approvers - len(earlier)
        return "already_voted", f"you already approved: it needs {more} more {'person' if more == 1 else 'people'}"
    if earlier and earlier[0].edited != d.edited:
        return "bad_edit", "the approvals before yours approved other arguments: approve those, or reject"
    return None


__all__ = [
    "MAX_APPROVERS",
    "RefusalCode",
    "counts",
    "edit_error",
    "from_words",
    "group_of",
    "is_requester",
    "person",
    "refusal",
    "still_needed",
]
