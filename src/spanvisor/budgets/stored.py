"""A spending window's stored value (:mod:`spanvisor.budgets.spend`): this
owner's figures merged in, or handed to :data:`RETIRED` when an agent
process exits. Pure functions of the stored value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spanvisor.budgets.ledger import KeyShare

# The owner that exited agent processes hand their figures to.
RETIRED = "~retired"


def merged(current: Mapping[str, Any] | None, shares: Mapping[str, KeyShare], me: str) -> dict[str, Any]:
    """The stored value of a window with ``me``'s figures and levels merged in,
    at the next version; every other owner's figures kept as they are."""
    base = current if isinstance(current, Mapping) else {}
    raw_keys = base.get("keys")
    keys: dict[str, Any] = (
        {k: dict(v) for k, v in raw_keys.items() if isinstance(v, Mapping)} if isinstance(raw_keys, Mapping) else {}
    )
    for key, share in shares.items():
        entry = keys.setdefault(key, {})
        by = dict(entry.get("by")) if isinstance(entry.get("by"), Mapping) else {}
        if share.nanos or me in by:
            by[me] = share.nanos
        old = entry.get("said")
        said = {float(x) for x in old if isinstance(x, int | float)} if isinstance(old, list) else set()
        said.update(share.said)
        entry.update(scope=share.scope, subject=share.subject, agent=share.agent, by=by, said=sorted(said))
    v = base.get("v")
    version = v + 1 if isinstance(v, int) and not isinstance(v, bool) else 1
    return {"v": version, "keys": keys}


def retired(current: Mapping[str, Any] | None, me: str) -> dict[str, Any] | None:
    """The stored value with ``me``'s figures added to ``RETIRED``'s, at the
    next version; None when ``me`` has none there."""
    raw_keys = current.get("keys") if isinstance(current, Mapping) else None
    if not isinstance(raw_keys, Mapping) or current is None:
        return None
    keys: dict[str, Any] = {}
    moved = False
    for key, entry in raw_keys.items():
        keys[key] = entry
        by = entry.get("by") if isinstance(entry, Mapping) else None
        if isinstance(by, Mapping) and isinstance(by.get(me), int):
            by = dict(by)
            nanos = by.pop(me)
            old = by.get(RETIRED)
            by[RETIRED] = (old if isinstance(old, int) else 0) + nanos
            keys[key] = {**entry, "by": by}
            moved = True
    v = current.get("v")
    return {"v": v + 1 if isinstance(v, int) else 1, "keys": keys} if moved else None


__all__ = ["RETIRED", "merged", "retired"]
