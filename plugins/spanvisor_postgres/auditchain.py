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
is reported as deleted, with when. A removal is ``pruned`` only when a
prune record of its transaction made it (migration 0017, :mod:`.removals`). What a chain cannot show on its own: a rewrite of
every link from some row to the newest, by someone who can write the table
and its triggers. So heads kept elsewhere are checked too: the checkpoints
the sink records (``decision_chain_checkpoints``, migration 0015:
:mod:`.checkpoints`) and one the operator gives (``--head SEQ:HASH``, from
the log line or the webhook that carried it out of the database). A kept
head the chain no longer passes through (its link gone, or another hash)
is a rewrite, named with the range of links it must have started in.
Then what the log says must hold (:mod:`.invariants`): one applied outcome
per request, and a row for every decision the control log applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import invariants, removals

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
_HAS_CHECKPOINTS = "SELECT to_regclass('decision_chain_checkpoints') IS NOT NULL"
_CHECKPOINTS = "SELECT seq, row_hash, at FROM decision_chain_checkpoints ORDER BY seq"
_HEAD_ARG = re.compile(r"^\s*(\d+)\s*:\s*([0-9a-fA-F]{64})\s*$")


@dataclass(frozen=True, slots=True)
class KeptHead:
    """A link's number and hash kept apart from the chain, and whence."""

    seq: int
    hash: str
    what: str  # "the checkpoint of <time>", "the head given"


def parse_head(text: str) -> KeptHead:
    """``SEQ:HASH`` (as the log line, the webhook or verify gave them)."""
    m = _HEAD_ARG.match(text)
    if m is None or int(m.group(1)) < 1:
        raise ValueError(f"{text!r} is not SEQ:HASH (a link number and its 64 hex digits)")
    return KeptHead(int(m.group(1)), m.group(2).lower(), "the head given")


def checkpoint(seq: int, digest: str, at: datetime | None) -> KeptHead:
    when = at.isoformat(timespec="seconds") if at is not None else "unknown time"
    return KeptHead(seq, digest, f"the checkpoint of {when}")


@dataclass
class ChainVerdict:
    """What the walk found: ``problems`` empty when the chain holds."""

    links: int = 0
    present: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)
    # Kept heads the chain still passes through, described for the report.
    held: list[str] = field(default_factory=list)


def check_kept(v: ChainVerdict, links: list[dict[str, Any]], kept: list[KeptHead]) -> None:
    """Each kept head must still be a link with its hash. Links are chained,
    so once one holds every link before it does: the first that does not
    names where a rewrite began, after the last that held."""
    hashes = {int(link["seq"]): link["hash"] for link in links}
    held_at, checkpoints, newest = 0, 0, 0
    for k in sorted(kept, key=lambda k: (k.seq, k.what)):
        have = hashes.get(k.seq)
        if have == k.hash:
            held_at = k.seq
            if k.what == "the head given":
                v.held.append(f"the head given (link {k.seq})")
            else:
                checkpoints, newest = checkpoints + 1, k.seq
            continue
        since = f"from a link after {held_at}" if held_at else "from its first link"
        if have is None:
            v.problems.append(
                f"link {k.seq} of {k.what} is no longer in the chain (it ends at link {max(hashes, default=0)}): links were "
                f"removed or the chain rewritten, {since} on"
            )
        else:
            v.problems.append(
                f"link {k.seq} no longer has the hash of {k.what} ({k.hash}): the chain was rewritten {since} "
                f"up to link {k.seq}"
            )
        break
    if checkpoints:
        v.held.insert(0, f"{checkpoints} checkpoint{'s' if checkpoints != 1 else ''} (newest: link {newest})")


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


async def verify(conn: Any, given: KeptHead | None = None, floor_s: float = removals.PRUNE_FLOOR_S) -> ChainVerdict:
    """The chain walked, and checked against its recorded checkpoints and
    ``given`` (a head the operator kept); the removals labelled pruned
    against the prunes that made them (none younger than ``floor_s``)."""
    links = [dict(r) for r in await conn.fetch(_LINKS)]
    unlinked = [r["intervention_id"] for r in await conn.fetch(_UNLINKED)]
    verdict = walk(links, unlinked)
    recorded = await conn.fetch(_CHECKPOINTS) if await conn.fetchval(_HAS_CHECKPOINTS) else []
    kept = [checkpoint(int(r["seq"]), r["row_hash"], r["at"]) for r in recorded]
    check_kept(verdict, links, [*kept, *([given] if given is not None else [])])
    verdict.problems += await removals.check(conn, floor_s)
    verdict.problems += await invariants.check(conn)
    return verdict


def report(v: ChainVerdict) -> str:
    removed = ", ".join(f"{n} {how}" for how, n in sorted(v.removed.items()))
    counts = f"{v.links} links ({v.present} rows{', ' + removed if removed else ''})"
    if v.problems:
        return "\n".join(["decision log: NOT intact", *(f"  {p}" for p in v.problems), f"  checked up to: {counts}"])
    held = f"; passes through {' and '.join(v.held)}" if v.held else ""
    return f"decision log intact: {counts}; head {v.head_seq} {v.head_hash}{held}"


__all__ = ["GENESIS", "ChainVerdict", "KeptHead", "check_kept", "checkpoint", "parse_head", "report", "verify", "walk"]
