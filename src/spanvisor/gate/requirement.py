"""How much approval a call needs, and the floor the central policy sets.

The server's central policy (``SPANVISOR_POLICY``) is a *floor*: a request
may ask for more approval than it requires, never less. What it requires
of one call is a :class:`Requirement`; :func:`raised` applies it to what a
request asked (the approvers raised, whose approvals count narrowed, a
deny turned into the request's denial). Every path that turns a request
into an approval request applies it there (the tracker, where a request
event becomes one), and the control log applies the current version again
when a person decides and where the approval is used.

Standard library only, and no shell parser: what a :class:`Floor` is
(:mod:`.central` implements it) is all the request's path imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from spanvisor.gate.rules import Facts, Verdict

STRICTNESS = {"allow": 0, "ask": 1, "deny": 2}
# What a request says of the local rule that asked it (the hook's policy).
ATTR_RULE = "spanvisor.policy.rule"


class Requirement(NamedTuple):
    """What a policy requires of one call: ``verdict`` (allow: no approval
    needed; ask: ``approvers`` people, from ``approvers_from`` when named;
    deny: never), the rule that said so and the policy's version."""

    verdict: Verdict
    approvers: int = 1
    approvers_from: tuple[str, ...] = ()
    rule: str = "default"
    reason: str | None = None
    version: str = ""


class Floor(Protocol):
    """The central policy as the request's path sees it."""

    @property
    def version(self) -> str: ...

    def requirement(self, action: Mapping[str, Any] | None, facts: Facts) -> Requirement: ...


def narrower(floor: tuple[str, ...], other: tuple[str, ...]) -> tuple[str, ...]:
    """Whose approvals count when both lists must hold (each names groups
    ``group:NAME`` and people; empty: anyone's). The narrower one, or the
    entries both name; ``floor`` when they name nobody in common (a request
    holds one list: the floor's must hold, so the other is given up)."""
    if not floor or not other:
        return floor or other
    mine = {x.casefold() for x in floor}
    theirs = {x.casefold() for x in other}
    if theirs <= mine:
        return other
    if mine <= theirs:
        return floor
    both = tuple(x for x in other if x.casefold() in mine)
    return both or floor


class Raised(NamedTuple):
    """A request's requirement once the floor is applied."""

    approvers: int
    approvers_from: tuple[str, ...]
    required_by: str
    denied: str | None = None
    by_floor: bool = False  # the floor's rule set it (else the request asked at least as much)


def raised(approvers: int, approvers_from: tuple[str, ...], asked_by: str, floor: Requirement) -> Raised:
    """What a request that asked ``approvers`` people from ``approvers_from``
    (``asked_by``: who asked so: a local rule, or "the request") needs
    under ``floor``: never less than either."""
    if floor.verdict == "deny":
        why = floor.reason or f"denied by rule {floor.rule} of the central policy"
        return Raised(approvers, approvers_from, floor.rule, why, True)
    if floor.verdict == "allow":
        return Raised(approvers, approvers_from, asked_by)
    need = max(approvers, floor.approvers)
    only = narrower(floor.approvers_from, approvers_from)
    mine = floor.approvers >= approvers or only != approvers_from
    return Raised(need, only, floor.rule if mine else asked_by, None, mine)


def at_least(got: Requirement, floor: Requirement) -> bool:
    """Whether ``got`` asks at least what ``floor`` requires."""
    if floor.verdict == "deny" or got.verdict == "deny":
        return got.verdict == "deny"
    if floor.verdict == "allow":
        return True
    if got.verdict != "ask" or got.approvers < floor.approvers:
        return False
    return narrower(floor.approvers_from, got.approvers_from) == got.approvers_from


__all__ = ["ATTR_RULE", "STRICTNESS", "Floor", "Raised", "Requirement", "at_least", "narrower", "raised"]
