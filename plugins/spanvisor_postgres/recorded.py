"""Applied means recorded: every decision the control log applied has its
``human_interventions`` row.

The control log (the runs' records in ``delivery_state``, namespace
``decisions``: :mod:`spanvisor.control.log`) is the one source of what was
decided: a decision is answered ``applied`` once its run's record holds it,
committed. Its audit row is written from it afterwards, by the sink of the
process that applied it; a process killed in between (SIGKILL, a crash, a
full outbox) leaves a decision the agent acts on and the audit lacks. So
the sink looks for such decisions (:data:`MISSING`: right after it starts
for those decided before it, then every :data:`EVERY_S` for those older
than :data:`GRACE_S`) and writes their rows
through its outbox, as any other event: once, since a row is keyed by its
intervention id (``ON CONFLICT DO NOTHING``) and a decision whose row was
removed (pruned, or deleted: ``human_interventions_removed``) is never
written again.

A recovered row carries what the record holds (the decision, its request's
question and digest, the quorum's count, the run's agent) and the note
``recovered from the control log``. Where the control log is:

* the PostgreSQL state store (the default when this sink runs): the same
  database, searched with one query (:data:`MISSING`), by every replica;
* the local state store (a SQLite file in the data dir): its records are
  listed (``scan``) and their decisions looked up here; a process restarted
  on that data dir writes what its killed self left;
* the in-memory store: nothing to search after a crash (the control log
  died with the process), which :func:`recovery_for` says at start.

``spanvisor audit verify`` reports a decision still missing when the control
log is in its database (:mod:`.invariants`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from spanvisor.control.log import NAMESPACE
from spanvisor.control.runs import decision_from_dict, request_from_dict
from spanvisor.events import HumanIntervention, TaskView
from spanvisor.statestores.api import ScannableStateStore

log = logging.getLogger("spanvisor.postgres")

EVERY_S = 60.0
# A decision younger than this may still be on its way through its own
# process's sink: left to it (at start too, the restarted process's own
# are older than its restart, and a live replica's are its own).
GRACE_S = 30.0
# The first round's: after a restart a lost decision is some seconds old at most.
START_GRACE_S = 2.0
LIMIT = 1000
# Records written this long before a round's horizon are read again by the
# next (a store's clock and a decision's may differ a little).
SLACK_S = 5.0
# Intervention ids looked up at once in the database.
CHUNK = 1000
NOTE = "recovered from the control log: applied, and its row was not written (the process stopped first)"

# The applied decisions of every run's record (its items, and the votes kept
# on a request several people approve, with their place), with neither a row
# nor a removed row, decided before $1 (ns).
MISSING = """
WITH d AS (
  SELECT s.value AS rec, x.value AS decision, NULL::text AS approval, 0::bigint AS place
    FROM delivery_state s
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(s.value->'items') = 'array' THEN s.value->'items' ELSE '[]'::jsonb END) AS x(value)
   WHERE s.namespace = 'decisions' AND s.value IS NOT NULL
  UNION ALL
  SELECT s.value, v.value, r.key, v.place
    FROM delivery_state s
    CROSS JOIN LATERAL jsonb_each(
        CASE WHEN jsonb_typeof(s.value->'requests') = 'object' THEN s.value->'requests' ELSE '{}'::jsonb END) AS r
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(r.value->'votes') = 'array' THEN r.value->'votes' ELSE '[]'::jsonb END)
        WITH ORDINALITY AS v(value, place)
   WHERE s.namespace = 'decisions' AND s.value IS NOT NULL
)
SELECT d.rec::text AS rec, d.decision::text AS decision, d.place FROM d
 WHERE jsonb_typeof(d.decision->'intervention_id') = 'string'
   AND jsonb_typeof(d.decision->'time_ns') = 'number' AND (d.decision->>'time_ns')::numeric < $1
   AND NOT EXISTS (SELECT 1 FROM human_interventions h WHERE h.intervention_id = d.decision->>'intervention_id')
   AND NOT EXISTS (SELECT 1 FROM human_interventions_removed r WHERE r.intervention_id = d.decision->>'intervention_id')
 ORDER BY (d.decision->>'time_ns')::numeric
 LIMIT $2
"""


# Which of a list of intervention ids have a row, or had one that was removed.
HAVE = """
SELECT intervention_id FROM human_interventions WHERE intervention_id = ANY($1::text[])
UNION
SELECT intervention_id FROM human_interventions_removed WHERE intervention_id = ANY($1::text[])
"""


def applied_of(rec: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], int]]:
    """What :data:`MISSING` reads of one run's record: its applied decisions
    (place 0) and the votes kept on its requests (with their place)."""
    items = rec.get("items")
    got: list[tuple[Mapping[str, Any], int]] = [
        (x, 0) for x in (items if isinstance(items, list) else []) if isinstance(x, Mapping)
    ]
    reqs = rec.get("requests")
    for r in reqs.values() if isinstance(reqs, Mapping) else ():
        votes = r.get("votes") if isinstance(r, Mapping) else None
        got += [(v, i) for i, v in enumerate(votes if isinstance(votes, list) else [], 1) if isinstance(v, Mapping)]
    return got


def event_of(rec_text: str, decision_text: str, place: int) -> HumanIntervention | None:
    """The applied event a recovered row is written from (None: malformed)."""
    return event_from(json.loads(rec_text), json.loads(decision_text), place)


def event_from(rec: Any, raw: Any, place: int) -> HumanIntervention | None:
    """:func:`event_of` of a record and a decision already read."""
    d = decision_from_dict(raw) if isinstance(raw, Mapping) and isinstance(rec, Mapping) else None
    if d is None or not isinstance(rec, Mapping):
        return None
    reqs = rec.get("requests")
    raw_req = reqs.get(d.approval_id or "") if isinstance(reqs, Mapping) else None
    req = request_from_dict(raw_req) if raw_req is not None else None
    needed = req.approvers if req is not None and req.approvers > 1 and d.action == "approve" else 0
    # A vote kept on its request: its place; the approval that decided: all of them.
    votes = (int(place) or needed) if needed else 0
    view = TaskView(
        task_id=d.task_id,
        trace_id="",  # ids only: the task row is left alone (known False)
        root_span_id="",
        agent_id=str(rec.get("agent_id") or "unknown"),
        run_id=d.run_id or str(rec.get("run_id") or ""),
    )
    return HumanIntervention(
        event_id=d.intervention_id,
        time_ns=d.time_ns,
        task=view,
        notes=(NOTE,),
        decision=d,
        outcome="applied",
        known=False,
        request=req,
        votes=votes,
        votes_needed=needed,
    )


async def missing(conn: Any, before_ns: int, limit: int = LIMIT) -> list[HumanIntervention]:
    rows = await conn.fetch(MISSING, before_ns, limit)
    got = [event_of(r["rec"], r["decision"], int(r["place"])) for r in rows]
    return [e for e in got if e is not None]


async def missing_in(
    records: list[tuple[str, Mapping[str, Any]]], conn: Any, before_ns: int, limit: int = LIMIT
) -> list[HumanIntervention]:
    """:func:`missing` of a control log kept elsewhere (``records``: its
    runs' records, as a :class:`ScannableStateStore` lists them)."""
    found: dict[str, tuple[int, Mapping[str, Any], Mapping[str, Any], int]] = {}
    for _key, rec in records:
        for raw, place in applied_of(rec):
            iid, t = raw.get("intervention_id"), raw.get("time_ns")
            if isinstance(iid, str) and isinstance(t, int) and t < before_ns:
                found.setdefault(iid, (t, rec, raw, place))
    ids, have = sorted(found), set()
    for i in range(0, len(ids), CHUNK):
        have |= {str(r["intervention_id"]) for r in await conn.fetch(HAVE, ids[i : i + CHUNK])}
    todo = sorted((v for iid, v in found.items() if iid not in have), key=lambda v: v[0])[:limit]
    return [e for _t, rec, raw, place in todo if (e := event_from(rec, raw, place)) is not None]


class Recovery:
    """At start and every :data:`EVERY_S`: the decisions missing their row,
    handed to ``write`` (the sink's outbox). ``store``: where the control
    log is, when not in this database."""

    def __init__(
        self,
        pool: Callable[[], Awaitable[Any]],
        write: Callable[[list[HumanIntervention]], Awaitable[None]],
        every_s: float = EVERY_S,
        grace_s: float = GRACE_S,
        store: ScannableStateStore | None = None,
    ) -> None:
        self._pool, self._write, self._store = pool, write, store
        self.every_s, self.grace_s = every_s, grace_s
        self.recovered = 0
        # The store's records written since then are read (0: all, at start).
        self._since_s = 0.0

    async def once(self) -> int:
        started = time.time()
        before = time.time_ns() - int(self.grace_s * 1e9)
        records = await self._store.scan(NAMESPACE, self._since_s) if self._store is not None else []
        pool = await self._pool()
        async with pool.acquire() as conn:
            got = await (missing(conn, before) if self._store is None else missing_in(records, conn, before))
        if len(got) < LIMIT:  # else the rest is read again next round
            # A decision younger than this round's horizon is in a record
            # written after it: the next round reads from there.
            self._since_s = started - self.grace_s - SLACK_S
        if got:
            log.warning("%d applied decisions had no audit row (their process stopped first): writing them", len(got))
            await self._write(got)
            self.recovered += len(got)
        return len(got)

    async def run(self) -> None:
        # The first round once START_GRACE_S has passed: everything decided
        # before this process started, its own lost decisions included.
        grace, wait = self.grace_s, START_GRACE_S
        self.grace_s = START_GRACE_S
        while True:
            await asyncio.sleep(wait)
            try:
                await self.once()
                self.grace_s, wait = grace, self.every_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next round tries again
                log.debug("looking for decisions without their audit row failed: %s", exc)
                wait = min(self.every_s, 5.0)


def recovery_for(
    store: Any, pool: Callable[[], Awaitable[Any]], write: Callable[[list[HumanIntervention]], Awaitable[None]]
) -> Recovery | None:
    """The recovery of a sink whose process keeps its control log in
    ``store``; None, said once, when a crash leaves nothing to search."""
    if type(store).__module__ == "spanvisor_postgres.statestore":  # the control log is in this database
        return Recovery(pool, write)
    if isinstance(store, ScannableStateStore):
        return Recovery(pool, write, store=store)
    log.warning(
        "the state store (%s) keeps the control log in this process only: a decision applied just before "
        "a crash may have no audit row; the postgres or local state store lets a restart write it",
        type(store).__name__,
    )
    return None


__all__ = [
    "EVERY_S",
    "GRACE_S",
    "HAVE",
    "MISSING",
    "NOTE",
    "START_GRACE_S",
    "Recovery",
    "applied_of",
    "event_from",
    "event_of",
    "missing",
    "missing_in",
    "recovery_for",
]
