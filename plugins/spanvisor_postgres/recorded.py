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
``recovered from the control log``. This needs the control log in the same
database: the PostgreSQL state store (the default when this sink runs).
``spanvisor audit verify`` reports a decision still missing (:mod:`.invariants`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from spanvisor.control.runs import decision_from_dict, request_from_dict
from spanvisor.events import HumanIntervention, TaskView

log = logging.getLogger("spanvisor.postgres")

EVERY_S = 60.0
# A decision younger than this may still be on its way through its own
# process's sink: left to it (at start too, the restarted process's own
# are older than its restart, and a live replica's are its own).
GRACE_S = 30.0
# The first round's: after a restart a lost decision is some seconds old at most.
START_GRACE_S = 2.0
LIMIT = 1000
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


def event_of(rec_text: str, decision_text: str, place: int) -> HumanIntervention | None:
    """The applied event a recovered row is written from (None: malformed)."""
    rec, raw = json.loads(rec_text), json.loads(decision_text)
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


class Recovery:
    """At start and every :data:`EVERY_S`: the decisions missing their row,
    handed to ``write`` (the sink's outbox)."""

    def __init__(
        self,
        pool: Callable[[], Awaitable[Any]],
        write: Callable[[list[HumanIntervention]], Awaitable[None]],
        every_s: float = EVERY_S,
        grace_s: float = GRACE_S,
    ) -> None:
        self._pool, self._write = pool, write
        self.every_s, self.grace_s = every_s, grace_s
        self.recovered = 0

    async def once(self) -> int:
        pool = await self._pool()
        async with pool.acquire() as conn:
            got = await missing(conn, time.time_ns() - int(self.grace_s * 1e9))
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


__all__ = ["EVERY_S", "GRACE_S", "MISSING", "NOTE", "START_GRACE_S", "Recovery", "event_of", "missing"]
