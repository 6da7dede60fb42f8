"""Standing approvals: a person approves ahead of time, for a tool (and an
agent) for a while, or for the rest of one run.

A grant is explicit (who, which tool and agent globs, which run, until
when), kept in the shared store next to the runs' records, listed
(``spanvisor grants``), revocable, and expires on the server: whether it
holds is decided where the request is judged, at that moment. A request it
covers is approved by a decision that names the grant and the person who
made it (``source="grant"``), judged and audited like any other.

What a grant never covers: a request without an action (a question is
always a person's), one several people must approve (two people means two
people, each time), and one whose requester made the grant.

Everything here is pure.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from spanvisor.events import ApprovalRequest, Decision, stable_id

# Most grants kept (live and ended); ended ones go first beyond it.
MAX_GRANTS = 200
# The longest a grant may stand: a forgotten grant must end by itself.
MAX_DURATION_S = 30 * 86_400
# How long an ended grant stays listed.
KEEP_ENDED_S = 86_400
NAMESPACE = "grants"
KEY = "all"


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: str
    by: str  # the verified person who made it
    tool: str  # a glob over the action's tool
    created_ns: int
    expires_ns: int
    agent: str = "*"  # a glob over the requesting agent
    task_id: str | None = None  # with run_id: this run only
    run_id: str | None = None
    comment: str | None = None
    revoked_ns: int | None = None
    revoked_by: str | None = None

    def live(self, now_ns: int) -> bool:
        return self.revoked_ns is None and now_ns < self.expires_ns

    def state(self, now_ns: int) -> str:
        return "revoked" if self.revoked_ns is not None else "live" if now_ns < self.expires_ns else "expired"


_GRANT_FIELDS = frozenset(f.name for f in fields(Grant))


def grant_from_dict(x: Any) -> Grant | None:
    """A stored grant; None for anything malformed (never raises)."""
    if not isinstance(x, Mapping):
        return None
    try:
        g = Grant(**{k: v for k, v in x.items() if k in _GRANT_FIELDS})
    except TypeError:
        return None
    ok = all(isinstance(v, str) for v in (g.grant_id, g.by, g.tool, g.agent))
    ok = ok and isinstance(g.created_ns, int) and isinstance(g.expires_ns, int)
    return g if ok else None


def grants_of(value: Mapping[str, Any] | None) -> list[Grant]:
    items = value.get("items") if isinstance(value, Mapping) else None
    got = [grant_from_dict(x) for x in items] if isinstance(items, list) else []
    return [g for g in got if g is not None]


def _tool(req: ApprovalRequest) -> str | None:
    try:
        action = json.loads(req.action) if req.action else None
    except ValueError:
        return None
    tool = action.get("tool") if isinstance(action, dict) else None
    return tool if isinstance(tool, str) else None


def covers(
    g: Grant, req: ApprovalRequest, agent_id: str, task_id: str, run_id: str, now_ns: int, former_id: str | None = None
) -> bool:
    """Whether the live grant ``g`` approves ``req`` of that run now
    (``former_id``: the id the task showed under before its root renamed
    it, which a grant given for that run may name)."""
    tool = _tool(req)
    # Never a request that counts only some people: a grant carries no proven groups.
    if tool is None or req.approvers > 1 or req.approvers_from or not g.live(now_ns):
        return False
    if req.requester and req.requester.strip().casefold() == g.by.strip().casefold():
        return False
    if g.run_id is not None and (g.task_id not in (task_id, former_id) or g.run_id != run_id):
        return False
    agent = req.agent or agent_id
    return fnmatch.fnmatchcase(tool, g.tool) and fnmatch.fnmatchcase(agent, g.agent)


def find(
    grants: Iterable[Grant],
    req: ApprovalRequest,
    agent_id: str,
    task_id: str,
    run_id: str,
    now_ns: int,
    former_id: str | None = None,
) -> Grant | None:
    """The oldest live grant covering ``req`` (one answer whoever looks)."""
    fit = [g for g in grants if covers(g, req, agent_id, task_id, run_id, now_ns, former_id)]
    return min(fit, key=lambda g: (g.created_ns, g.grant_id), default=None)


def decision(g: Grant, req: ApprovalRequest, task_id: str, run_id: str, now_ns: int) -> Decision:
    """The approve ``g`` makes on ``req``: one id per grant and request, so
    every replica that sees it records it once."""
    return Decision(
        intervention_id=stable_id("grant", g.grant_id, task_id, run_id, req.approval_id),
        task_id=task_id,
        action="approve",
        actor_id=g.by,
        time_ns=now_ns,
        approval_id=req.approval_id,
        actor_name=g.by,
        comment=f"granted by {g.by} (grant {g.grant_id})",
        source="grant",
        run_id=run_id,
        digest=req.digest,
        verified=True,
        grant_id=g.grant_id,
    )


def add(value: Mapping[str, Any] | None, g: Grant, now_ns: int) -> tuple[dict[str, Any] | None, bool]:
    """The stored list with ``g`` (ended grants past KEEP_ENDED_S dropped, and
    beyond MAX_GRANTS the oldest ended ones), and True; (None, False) when
    MAX_GRANTS are live already: a live grant is never dropped to make room."""
    keep = [x for x in grants_of(value) if x.grant_id != g.grant_id]
    keep = [x for x in keep if x.live(now_ns) or now_ns - _ended_ns(x) < KEEP_ENDED_S * 10**9]
    if sum(x.live(now_ns) for x in keep) >= MAX_GRANTS:
        return None, False
    keep.append(g)
    keep.sort(key=lambda x: (x.live(now_ns), x.created_ns))
    return {"items": [asdict(x) for x in keep[-MAX_GRANTS:]]}, True


def revoke(
    value: Mapping[str, Any] | None, grant_id: str, by: str, now_ns: int
) -> tuple[dict[str, Any] | None, Grant | None]:
    """The stored list with ``grant_id`` revoked (None: no change), and the grant."""
    got = grants_of(value)
    hit = next((g for g in got if g.grant_id == grant_id), None)
    if hit is None or hit.revoked_ns is not None:
        return None, hit
    done = Grant(**{**asdict(hit), "revoked_ns": now_ns, "revoked_by": by})
    return {"items": [asdict(done if g is hit else g) for g in got]}, done


def _ended_ns(g: Grant) -> int:
    return g.revoked_ns if g.revoked_ns is not None else g.expires_ns


__all__ = [
    "KEY",
    "MAX_DURATION_S",
    "MAX_GRANTS",
    "NAMESPACE",
    "Grant",
    "add",
    "covers",
    "decision",
    "find",
    "grant_from_dict",
    "grants_of",
    "revoke",
]
