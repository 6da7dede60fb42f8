"""Removals from the decision log that prune made, and proof of it
(migration 0017).

``spanvisor prune`` writes a ``decision_prunes`` record in each transaction
that removes decisions, before it removes them: the database stamps it (its
number in a hash chain of its own, when, the cutoff, the transaction) and
the removal trigger labels a removed row ``pruned`` only when a prune record
of the same transaction covers it (the row is older than the cutoff). No
session setting, and no later update (refused), makes a deletion look like
retention. Prune never removes a decision younger than the floor
(``SPANVISOR_AUDIT_PRUNE_FLOOR``, a day by default), and :func:`check`
reports:

* a removal labelled ``pruned`` that no prune record of its transaction
  made, or whose row was newer than that prune's cutoff;
* a prune record whose cutoff is younger than the floor: anyone who may
  INSERT can write a prune record, so how old is old enough is the
  operator's word (the floor), never the record's;
* a prune record changed, removed or out of order (its chain).
"""

from __future__ import annotations

from typing import Any

PRUNE_FLOOR_S = 86_400.0
_GENESIS = "0" * 64

# Written by prune before it deletes decisions, in the same transaction
# (only when there are some to delete): $1 is how old a decision must be.
RECORD_FOR_TASKS = (
    "INSERT INTO decision_prunes (older_than_s) SELECT $1"
    " WHERE EXISTS (SELECT 1 FROM human_interventions WHERE task_id = ANY($2::text[]) AND at < $3)"
)
RECORD_FOR_ORPHANS = (
    "INSERT INTO decision_prunes (older_than_s) SELECT $1 WHERE EXISTS (SELECT 1 FROM human_interventions h"
    " WHERE h.at < $2 AND NOT EXISTS (SELECT 1 FROM agent_tasks t WHERE t.task_id = h.task_id))"
)

_HAS = "SELECT to_regclass('decision_prunes') IS NOT NULL"
_PRUNES = """
SELECT p.seq, p.prev_hash, p.row_hash, spanvisor_prune_hash(p.prev_hash, p) AS recomputed, p.older_than_s, p.at
  FROM decision_prunes p ORDER BY p.seq
"""
# Removals made since migration 0017 (they name their transaction).
_PRUNED = """
SELECT r.chain_seq, r.intervention_id, r.removed_at, r.decided_at, p.seq AS prune, p.txid = r.txid AS same_tx,
       p.cutoff, p.at AS pruned_at
  FROM human_interventions_removed r LEFT JOIN decision_prunes p ON p.seq = r.prune_seq
 WHERE r.how = 'pruned' AND r.txid IS NOT NULL
 ORDER BY r.chain_seq
"""


def floor_of(config: Any) -> float:
    """``SPANVISOR_AUDIT_PRUNE_FLOOR`` (the default when the setting is unknown)."""
    value = config.get("audit_prune_floor")
    return PRUNE_FLOOR_S if value is None else float(value)


def _age(seconds: float) -> str:
    return f"{seconds / 86400:.3g} days" if seconds >= 86400 else f"{seconds / 3600:.3g} hours"


async def check(conn: Any, floor_s: float = PRUNE_FLOOR_S) -> list[str]:
    """What is wrong with the prune records and the removals labelled pruned."""
    if not await conn.fetchval(_HAS):
        return []
    problems: list[str] = []
    prev, expected = _GENESIS, 1
    for p in await conn.fetch(_PRUNES):
        if p["seq"] != expected or p["prev_hash"] != prev:
            problems.append(f"prune record {expected} is missing or out of order: the prune records were rewritten")
            break
        if p["recomputed"] != p["row_hash"]:
            problems.append(f"prune record {p['seq']} was changed after it was written")
            break
        if p["older_than_s"] < floor_s:
            problems.append(
                f"prune record {p['seq']} ({p['at']}) removed decisions only {_age(p['older_than_s'])} old: prune never "
                f"removes one younger than {_age(floor_s)} (SPANVISOR_AUDIT_PRUNE_FLOOR), so this was written to pass "
                "a deletion off as retention"
            )
        prev, expected = p["row_hash"], expected + 1
    for r in await conn.fetch(_PRUNED):
        link = f"link {r['chain_seq']} ({r['intervention_id']})"
        if r["prune"] is None or not r["same_tx"]:
            problems.append(f"{link} is labelled pruned, but no prune made it: it was deleted at {r['removed_at']}")
        elif r["decided_at"] is None or r["decided_at"] >= r["cutoff"]:
            problems.append(f"{link} is labelled pruned, but its row was newer than prune {r['prune']}'s cutoff")
    return problems


__all__ = ["PRUNE_FLOOR_S", "RECORD_FOR_ORPHANS", "RECORD_FOR_TASKS", "check", "floor_of"]
