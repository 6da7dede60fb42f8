"""Signing the decision rows serve wrote, and reading the signed log back.

In the transaction of a batch with people's decisions, after its rows and
before its commit, the sink signs those rows (:func:`sign_written`), by
intervention id, reading each back for its place in the chain: the link is
made by the database's trigger as the row is inserted, so it is known only
then; and a row is never committed without its signature. The content signed is what serve
wrote, never what the database says: a row whose content differs (someone
wrote a row under that id first, and serve's insert did nothing) is not
signed, and said once in the log. A batch replayed after a crash (the
outbox) signs its rows again; signing one already signed does nothing.

:func:`signed_log` reads the whole log (rows, removal records, signatures)
in chain order, the form ``spanvisor audit export`` writes and
:mod:`.signcheck` checks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from spanvisor.events import Event, HumanIntervention

from . import signing
from .humanrows import INTERVENTION_COLUMNS, intervention_record

log = logging.getLogger("spanvisor.postgres")

_COLUMNS = ", ".join(f"h.{c}" for c in INTERVENTION_COLUMNS)
# Every row of the batch, signed or not: Ed25519 signatures are deterministic,
# so signing a row again gives the signature it has (ON CONFLICT: nothing),
# and a signature someone else wrote for the link first blocks nothing.
_WRITTEN = f"""
SELECT {_COLUMNS}, h.chain_seq, h.prev_hash, h.row_hash FROM human_interventions h
 WHERE h.intervention_id = ANY($1::text[]) AND h.chain_seq IS NOT NULL
"""
_INSERT = """
INSERT INTO decision_signatures (chain_seq, intervention_id, key_id, signature)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING
"""
_LOG = f"""
SELECT 'row' AS kind, h.chain_seq AS seq, h.intervention_id, h.prev_hash, h.row_hash, NULL::text AS how,
       {_COLUMNS},
       (SELECT COALESCE(jsonb_agg(jsonb_build_object('key_id', s.key_id, 'signature', s.signature)
                                  ORDER BY s.signed_at, s.key_id, s.signature), '[]'::jsonb)::text
          FROM decision_signatures s WHERE s.chain_seq = h.chain_seq) AS signatures
  FROM human_interventions h
 WHERE h.chain_seq IS NOT NULL
UNION ALL
SELECT 'removed', r.chain_seq, r.intervention_id, NULL, r.row_hash, r.how,
       {", ".join("NULL" for _ in INTERVENTION_COLUMNS)}, NULL
  FROM human_interventions_removed r
ORDER BY seq
"""
_refused_said: set[str] = set()


def written(events: Sequence[Event]) -> dict[str, list[dict[str, Any]]]:
    """What each decision row ``events`` write may hold, by intervention id:
    one content per event of that decision. A batch may carry a decision
    twice (the killed process's event replayed from the outbox, and the row
    recovered from the control log, note and all): the first insert is the
    row, and either content is serve's."""
    from .rows import ts

    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if isinstance(e, HumanIntervention):
            rec = intervention_record(e, ts)
            out.setdefault(str(rec[0]), []).append(signing.content(dict(zip(INTERVENTION_COLUMNS, rec, strict=True))))
    return out


async def sign_written(conn: Any, key: signing.SigningKey, events: Sequence[Event]) -> int:
    """Sign the rows of ``events``' decisions not signed yet; how many."""
    mine = written(events)
    if not mine:
        return 0
    seqs: list[int] = []
    ids: list[str] = []
    sigs: list[str] = []
    for r in await conn.fetch(_WRITTEN, list(mine)):
        ident = str(r["intervention_id"])
        body = signing.content(dict(r))
        if body not in mine.get(ident, ()):
            if ident not in _refused_said:
                _refused_said.add(ident)
                log.error(
                    "decision %s: the database holds another row under its id than serve wrote (link %s); not signed",
                    ident,
                    r["chain_seq"],
                )
            continue
        seqs.append(int(r["chain_seq"]))
        ids.append(ident)
        sigs.append(signing.sign(key, int(r["chain_seq"]), str(r["prev_hash"]), str(r["row_hash"]), body))
    if seqs:
        await conn.execute(_INSERT, seqs, ids, [key.key_id] * len(seqs), sigs)
    return len(seqs)


def export_line(r: Any) -> dict[str, Any]:
    """One link as ``spanvisor audit export`` writes it (JSON-safe)."""
    if r["kind"] == "removed":
        return {
            "seq": int(r["seq"]),
            "removed": r["how"],
            "intervention_id": r["intervention_id"],
            "hash": r["row_hash"],
        }
    return {
        "seq": int(r["seq"]),
        "prev": r["prev_hash"],
        "hash": r["row_hash"],
        "content": signing.content(dict(r)),
        "signatures": json.loads(r["signatures"] or "[]"),
    }


async def signed_log(conn: Any) -> list[dict[str, Any]]:
    return [export_line(r) for r in await conn.fetch(_LOG)]


__all__ = ["export_line", "sign_written", "signed_log", "written"]
