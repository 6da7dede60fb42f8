"""``spanvisor audit verify``: the decision log's hash chain, recomputed.

Every ``human_interventions`` row is a link (migration 0013): its
``row_hash`` is the SHA-256 of the link before's hash and its own content,
computed by the database when the row is written. Verifying walks the links
in order, recomputes each row's hash with the same SQL function, and names
the first link that does not hold:

* a row whose content no longer gives its hash: **changed** after it was
  written;
* a row whose ``prev_hash`` is not the link before's hash: a row before it
  was changed together with its hash, or the chain was rewritten or put
  out of order from there;
* a number with neither a row nor a record of its removal: a row
  **deleted** with the trigger that records removals turned off;
* a row with no link at all: written past the chain.

Removed rows leave their link in ``human_interventions_removed``, so pruning
(``how = 'pruned'``) keeps the chain checkable; a row removed any other way
is reported as deleted, with when. What a chain cannot show on its own: a rewrite of
every link from some row to the newest, by someone who can write the table
and its triggers. Keep the printed head (its number and hash) somewhere
else, and a later verify that no longer reaches it shows the rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64

_LINKS = """
SELECT h.chain_seq AS seq, h.intervention_id AS id, h.prev_hash AS prev, h.row_hash AS hash,
       spanvisor_intervention_hash(h.prev_hash, h) AS recomputed, NULL::text AS how, NULL::timestamptz AS removed_at
  FROM human_interventions h WHERE h.chain_seq IS NOT NULL
UNION ALL
SELECT r.chain_seq, r.intervention_id, NULL, r.row_hash, NULL, r.how, r.removed_at FROM human_interventions_removed r
ORDER BY seq
"""
_UNLINKED = "SELECT intervention_id FROM human_interventions WHERE chain_seq IS NULL ORDER BY at LIMIT 5"


@dataclass
class ChainVerdict:
    """What the walk found: ``problems`` empty when the chain holds."""

    links: int = 0
    present: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)


def walk(links: list[dict[str, Any]], unlinked: list[str]) -> ChainVerdict:
    """Check ``links`` (rows and removal records, by number)."""
    v = ChainVerdict()
    expected_prev, expected_seq = GENESIS, 1
    for link in links:
        seq, ident = int(link["seq"]), link["id"]
        if seq != expected_seq:
            what = "missing" if seq > expected_seq else "given twice"
            v.problems.append(
                f"link {expected_seq} is {what}: a row was deleted without its removal being recorded, "
                f"or rows were renumbered (the next link found is {seq}, {ident})"
            )
            break
        if link["how"] == "pruned":  # removed by spanvisor prune, its link kept
            v.removed["pruned"] = v.removed.get("pruned", 0) + 1
        elif link["how"] is not None:
            v.problems.append(f"link {seq} ({ident}) was deleted at {link['removed_at']}, not by spanvisor prune")
            break
        else:
            if link["prev"] != expected_prev:
                v.problems.append(
                    f"link {seq} ({ident}) does not follow link {seq - 1}: a row before it was changed together "
                    "with its hash, or the chain was rewritten or reordered from there"
                )
                break
            if link["recomputed"] != link["hash"]:
                v.problems.append(
                    f"link {seq} ({ident}) was changed after it was written: its content gives another hash"
                )
                break
            v.present += 1
        expected_prev, expected_seq = link["hash"], seq + 1
        v.links, v.head_seq, v.head_hash = seq, seq, link["hash"]
    for ident in unlinked:
        v.problems.append(f"row {ident} has no link: it was written past the chain (its trigger turned off)")
    return v


async def verify(conn: Any) -> ChainVerdict:
    links = [dict(r) for r in await conn.fetch(_LINKS)]
    unlinked = [r["intervention_id"] for r in await conn.fetch(_UNLINKED)]
    return walk(links, unlinked)


def report(v: ChainVerdict) -> str:
    removed = ", ".join(f"{n} {how}" for how, n in sorted(v.removed.items()))
    counts = f"{v.links} links ({v.present} rows{', ' + removed if removed else ''})"
    if v.problems:
        return "\n".join(["decision log: NOT intact", *(f"  {p}" for p in v.problems), f"  checked up to: {counts}"])
    return f"decision log intact: {counts}; head {v.head_seq} {v.head_hash}"


__all__ = ["GENESIS", "ChainVerdict", "report", "verify", "walk"]
