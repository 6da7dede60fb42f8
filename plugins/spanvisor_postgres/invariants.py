"""What ``spanvisor audit verify`` checks besides the chain: the decision
log says what happened, once.

* **One outcome per request.** At most one applied approve or reject of a
  request (a run's approval id) that decides it: the votes counted before
  the last of a request several people approve (``attributes.votes`` below
  ``votes_needed``) are not outcomes.
* **Applied means recorded.** Every decision the control log applied (the
  runs' records in ``delivery_state``, when the state store is this
  database) has its row, or had one that was removed (then the chain
  reports the removal). Decisions younger than :data:`GRACE_S` may still be
  on their way and are left out.

Each is a list of problems in the verdict's words, empty when it holds.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .recorded import MISSING

GRACE_S = 120.0
SHOWN = 5

_TWICE = """
SELECT task_id, run_id, approval_id, count(*) AS n, array_agg(intervention_id ORDER BY chain_seq) AS ids
  FROM human_interventions
 WHERE outcome = 'applied' AND action IN ('approve', 'reject') AND approval_id IS NOT NULL
   AND NOT COALESCE(jsonb_typeof(attributes->'votes') = 'number' AND jsonb_typeof(attributes->'votes_needed') = 'number'
            AND (attributes->>'votes')::numeric < (attributes->>'votes_needed')::numeric, false)
 GROUP BY task_id, run_id, approval_id
HAVING count(*) > 1
 ORDER BY min(chain_seq)
 LIMIT $1
"""


async def check(conn: Any, now_ns: int | None = None) -> list[str]:
    problems = []
    for r in await conn.fetch(_TWICE, SHOWN):
        problems.append(
            f"request {r['approval_id']} of task {r['task_id']} (run {r['run_id']}) has {r['n']} applied outcomes "
            f"({', '.join(r['ids'])}): a request is decided once"
        )
    before = (time.time_ns() if now_ns is None else now_ns) - int(GRACE_S * 1e9)
    for r in await conn.fetch(MISSING, before, SHOWN):
        d = json.loads(r["decision"])
        what = f"{d.get('action')} of {d.get('approval_id')}" if d.get("approval_id") else str(d.get("action"))
        problems.append(
            f"an applied decision of the control log has no row: {d.get('intervention_id')} ({what} on task "
            f"{d.get('task_id')}, by {d.get('actor_name') or d.get('actor_id')}): its process stopped before "
            "writing it and no sink on this database has recovered it yet, or its row was removed with the "
            "removal trigger turned off"
        )
    return problems


__all__ = ["GRACE_S", "check"]
