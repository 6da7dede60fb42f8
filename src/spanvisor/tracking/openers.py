"""Who opened a request, and whether a note may withdraw it.

An ``agent.approval.decision`` note (the agent saying it read its answer,
or stopped waiting) closes the request it names: after it, no decision
lands on it. Anyone holding the OTLP token can send spans into any task
(stamped with its trace and root), so a note is taken only from the same
task and session that opened the request, as the spans carrying the two
claim them: the task id (``agent.task.id``; a span without one claims the
task it is read into) and ``session.id`` (when the note names one).
Any other note is ignored (kept on its checkpoint as :data:`IGNORED_NOTE`,
counted by the control plane, logged once). A span can claim any
identity, so this keeps a sender of other tasks' spans from closing a
request by accident or by a guessed id, not one who copies the opener's
stamps too; the request then stays open until its timeout or its run's
end, as if no note had come.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from spanvisor.spans import conventions as cv

# The checkpoint attribute that names the request an ignored note named.
IGNORED_NOTE = "ignored_approval_note"

_log = logging.getLogger("spanvisor.tracker")
_said: list[bool] = [False]


def claimed(attrs: Mapping[str, Any]) -> str:
    """The identity a span claims: its task id stamp and session id."""
    task, session = attrs.get(cv.TASK_ID), attrs.get(cv.OI_SESSION)
    return f"{task if isinstance(task, str) else ''}\x00{session if isinstance(session, str) else ''}"


def remember(openers: dict[str, str] | None, approval_id: str, who: str) -> dict[str, str]:
    """``openers`` with ``approval_id`` opened by ``who`` (the first stands)."""
    out = openers if openers is not None else {}
    out.setdefault(approval_id, who)
    return out


def _same(opener: str, who: str, task_id: str) -> bool:
    """A span without a task id stamp claims the task it is read into (a
    root, an unstamped child), and a note without a session claims none:
    only a claim that differs tells two apart."""
    o_task, _, o_session = opener.partition("\x00")
    n_task, _, n_session = who.partition("\x00")
    if (o_task or task_id) != (n_task or task_id):
        return False
    return not n_session or n_session == o_session


def may_withdraw(openers: Mapping[str, str] | None, approval_id: str, who: str, task_id: str) -> bool:
    """Whether a note claiming ``who`` may close ``approval_id`` of task ``task_id``."""
    opener = (openers or {}).get(approval_id)
    if opener is None or _same(opener, who, task_id):
        return True
    if not _said[0]:
        _said[0] = True
        _log.warning(
            "task %s: a note on approval %s from another task or session was ignored (the request stays open); "
            "counted in spanvisor_approval_notes_ignored_total and not logged again",
            task_id,
            approval_id,
        )
    return False


__all__ = ["IGNORED_NOTE", "claimed", "may_withdraw", "remember"]
