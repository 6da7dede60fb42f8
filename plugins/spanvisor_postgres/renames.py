"""A provisional task renamed: its rows moved to the id its root names (issue 66).

On the end-order paths a task may show before its root arrives, under the id
derived from its run, ``<trace id>-<root span id>`` (D). When the root names
the task's own id X, every event from then on carries ``task_id`` X and
``former_id`` D. The writer, in the transaction of any batch holding such an
event and before that batch's own rows, moves what the audit holds under D
to X: the task row (by the upsert rule, so an X row of an older, ended run is
replaced and one of the same run merged), its timeline, artifacts and log
tail; and records the link in ``task_aliases`` (migration 0019). Decisions
(``human_interventions``) stay under D: their rows are links of a hash chain
and are never changed; readers show them as X's through the alias.

Everything is keyed by data in the events, never by what this process saw
before, so replays, a restarted sink and replicas sharing the database agree:

* every event after the rename carries ``former_id``, so every such batch
  moves again (nothing is left to move the second time: a few index probes);
* an event still under D (a replay from before the rename, or a replica that
  never saw the root and still shows the task provisionally) is written under
  X once the alias exists, and its batch moves any row left under D;
* writers of D hold a transaction lock on it (renamer and provisional
  writer alike), so a provisional batch committed while the rename runs is
  either moved by it or sees its alias.

An alias is followed only when its former id is the derived id of the run of
the task row it names (the row's ``trace_id || '-' || root_span_id``): a row
written into ``task_aliases`` by someone other than the sink cannot send a
provisional task's rows, or make its decisions show, anywhere but the task of
that same run.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from spanvisor.events import Event

from .rows import TASK_COLUMNS
from .tables import TASK_CONFLICT

# The id a provisional task shows under (tracking.tasktable.default_task_id):
# only such an id can have been renamed.
DERIVED = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}")

# A transaction lock per derived id (the two-key form: a key space apart from
# the one-key locks of migrations, the decision chain and the stream).
_LOCK_SPACE = 0x53565241  # "SVRA"
LOCK = "SELECT count(pg_advisory_xact_lock($2::int4, hashtext(d))) FROM unnest($1::text[]) AS d"

# A followed alias: its former id is the derived id of the run of the task it names.
FOLLOWED = "a.former_id = x.trace_id || '-' || x.root_span_id"

# Given renames ($1 former ids, $2 task ids, $3 runs: each former id and each
# task id once) and provisional ids ($4) an alias may have moved: the aliases
# written, and every row under a former id moved, in one statement (its parts
# see one snapshot and touch distinct rows). Returns the aliases followed for
# $4. A task's log tail has one row per place: one X holds already stays.
MOVE = f"""
WITH given AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS g(former_id, task_id, run_id)
), found AS (
    SELECT a.former_id, a.task_id, a.run_id
    FROM task_aliases a JOIN agent_tasks x ON x.task_id = a.task_id AND {FOLLOWED}
    WHERE a.former_id = ANY($4::text[]) AND a.former_id <> ALL($1::text[]) AND a.task_id <> ALL($2::text[])
), pairs AS (
    SELECT former_id, task_id, run_id FROM given UNION ALL SELECT former_id, task_id, run_id FROM found
), aliased AS (
    INSERT INTO task_aliases AS a (former_id, task_id, run_id) SELECT former_id, task_id, run_id FROM given
    ON CONFLICT (former_id) DO UPDATE SET task_id = EXCLUDED.task_id, run_id = EXCLUDED.run_id, renamed_at = now()
    WHERE (a.task_id, a.run_id) IS DISTINCT FROM (EXCLUDED.task_id, EXCLUDED.run_id)
), gone AS (
    DELETE FROM agent_tasks d USING pairs p
    WHERE d.task_id = p.former_id AND d.trace_id || '-' || d.root_span_id = p.former_id
    RETURNING p.task_id AS new_id, d.*
), tasks AS (
    INSERT INTO agent_tasks AS t ({", ".join(TASK_COLUMNS)}) SELECT new_id, {", ".join(TASK_COLUMNS[1:])}
    FROM gone {TASK_CONFLICT}
), timeline AS (
    UPDATE agent_checkpoints c SET task_id = p.task_id FROM pairs p WHERE c.task_id = p.former_id
), artifacts AS (
    UPDATE task_artifacts r SET task_id = p.task_id FROM pairs p WHERE r.task_id = p.former_id
), logs_there AS (
    DELETE FROM task_logs l USING pairs p WHERE l.task_id = p.former_id
      AND EXISTS (SELECT 1 FROM task_logs k WHERE k.task_id = p.task_id AND k.pos = l.pos)
), logs AS (
    UPDATE task_logs l SET task_id = p.task_id FROM pairs p WHERE l.task_id = p.former_id
      AND NOT EXISTS (SELECT 1 FROM task_logs k WHERE k.task_id = p.task_id AND k.pos = l.pos)
)
SELECT former_id, task_id FROM found
"""


@dataclasses.dataclass(slots=True)
class Renames:
    """What a batch says of renamed tasks (:func:`renames_in`)."""

    # Former id -> (task id, run id), from the events that carry former_id,
    # in rounds: within one, every task id once (an id reused by two runs
    # renamed in one batch moves in two statements).
    rounds: list[dict[str, tuple[str, str]]]
    # Provisional tasks' derived ids with no former id: an earlier rename
    # (another batch, another replica) may have moved them.
    provisional: list[str]

    def held(self) -> list[str]:
        """The derived ids to lock, in one order for every writer (no deadlocks)."""
        return sorted({d for r in self.rounds for d in r} | set(self.provisional))


def renames_in(events: Sequence[Event]) -> Renames | None:
    """The renames and provisional ids of a batch; None for a batch with neither
    (the usual one: it costs nothing more)."""
    rounds: list[dict[str, tuple[str, str]]] = []
    provisional: set[str] = set()
    for event in events:
        v = event.task
        d = v.former_id
        if d is not None:
            if d == v.task_id or any(d in r for r in rounds):
                continue
            for r in rounds:
                if all(x != v.task_id for x, _ in r.values()):
                    r[d] = (v.task_id, v.run_id)
                    break
            else:
                rounds.append({d: (v.task_id, v.run_id)})
        elif v.provisional and DERIVED.fullmatch(v.task_id) and v.task_id == f"{v.trace_id}-{v.root_span_id}":
            # Before its root arrives a task's views say provisional; a task
            # whose root named no id keeps its derived id, is never renamed,
            # and is not looked up.
            provisional.add(v.task_id)
    if not rounds and not provisional:
        return None
    given = {d for r in rounds for d in r}
    return Renames(rounds, sorted(provisional - given))


async def take(conn: Any, renames: Renames) -> dict[str, str]:
    """In the batch's transaction, before its rows: lock, record and move.
    Returns former id -> task id for every derived id of the batch now
    under another id: the batch writes those events' rows under it."""
    await conn.execute(LOCK, renames.held(), _LOCK_SPACE)
    moved: dict[str, str] = {}
    for i, r in enumerate(renames.rounds or [{}]):
        formers = list(r)
        rows = await conn.fetch(
            MOVE,
            formers,
            [x for x, _ in r.values()],
            [run for _, run in r.values()],
            renames.provisional if i == 0 else [],
        )
        moved.update({d: x for d, (x, _) in r.items()})
        moved.update({str(row["former_id"]): str(row["task_id"]) for row in rows})
    return moved


def under(event: Event, moved: dict[str, str]) -> Event:
    """``event`` as the batch writes its rows: a provisional id a rename moved
    is written under the task's id (a decision's own row is not: see batch.py)."""
    v = event.task
    x = moved.get(v.task_id)
    if x is None or v.former_id is not None:
        return event
    return dataclasses.replace(event, task=dataclasses.replace(v, task_id=x, former_id=v.task_id))


__all__ = ["DERIVED", "FOLLOWED", "MOVE", "Renames", "renames_in", "take", "under"]
