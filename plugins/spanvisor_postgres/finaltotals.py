"""A finished task's totals, recounted from its audit rows (SQL strings and
pure code, no I/O).

Under spraying a replica's view counts only the calls it received, and the
task row follows the root's replica's view; but every model call is a row
of the timeline, once whichever replica wrote it (``source='model_call'``,
keyed by the id the call has on every replica, with its own tokens and
cost). ``spanvisor_recount`` (migration 0014, called by :data:`RECOUNT`)
sums those rows into a finished task's tokens, cost and unpriced calls.
Work that ended after the task is not a model-call row (the late-span rule
keeps only what it added, as a ``corrected`` row): its row names the id the
call has where it was read in time (:func:`call_id`), so the same span read
as outlived work on one replica and in time on another counts once.

A total is never lowered by the recount: a view can count what the rows do
not (an event set aside).
"""

from __future__ import annotations

from spanvisor.events import TaskCorrected, stable_id


def call_id(event: TaskCorrected) -> str | None:
    """The id a call of outlived work has where it was read in time (its
    model-call checkpoint's: task id, run id, "model", the span id; see
    docs/reference/conventions.md#event-ids), or None when the correction added no
    call (artifacts only) or its span ended within the task (its facts are
    the rows)."""
    added = (event.added_input_tokens, event.added_output_tokens, event.added_unpriced_calls, event.added_cost_usd)
    if event.arrived_late or not any(added):
        return None
    return stable_id(event.task.task_id, event.task.run_id, "model", event.span_id)


# The recount itself is the function spanvisor_recount (migration 0014).
# The tasks a batch touched are those of its task rows: every event that can
# move a finished task's totals (a finish, a correction, a model call) brings
# its task's row, and the upsert has already locked those rows in id order,
# so the recount takes no lock of its own and replicas cannot deadlock on it.
# The copy path's form: the task rows staged in this transaction.
RECOUNT_STAGED = "SELECT spanvisor_recount(ARRAY(SELECT task_id FROM _stage_agent_tasks));"
# The other paths': the task ids as $1.
RECOUNT = "SELECT spanvisor_recount($1::text[])"

__all__ = ["RECOUNT", "RECOUNT_STAGED", "call_id"]
