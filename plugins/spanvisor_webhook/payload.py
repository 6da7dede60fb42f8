"""What one webhook says: a HumanIntervention as compact JSON. Only those
are sent; task events (TaskStarted … TaskFinished, TaskCorrected) are not.

Ids, the decision and the person's own comment, and the task's names and
status. Agent text (the task name) goes in as a plain JSON string: the
receiver is a program, not a chat, so nothing is escaped beyond JSON. For a
task this process does not track (``known=False``, e.g. a retry of a task that
finished and was forgotten) the view may carry only ids: the fields it does
not know are null rather than placeholders.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from spanvisor.events import Event, HumanIntervention

TYPE = "spanvisor.intervention"


def wanted(event: Event, actions: tuple[str, ...]) -> bool:
    """An applied intervention of one of ``actions`` (all when empty)."""
    return (
        isinstance(event, HumanIntervention)
        and event.outcome == "applied"
        and (not actions or event.decision.action in actions)
    )


def rfc3339(time_ns: int) -> str:
    """UTC with milliseconds, ``2026-11-22T14:30:00.123Z``."""
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(event: HumanIntervention) -> dict[str, Any]:
    d = event.decision
    v = event.task
    bare = v.trace_id == ""  # a view with only ids (see HumanIntervention)
    return {
        "type": TYPE,
        "intervention_id": d.intervention_id,
        "task_id": d.task_id,
        "action": d.action,
        "approval_id": d.approval_id,
        "actor": {"id": d.actor_id, "name": d.actor_name},
        "comment": d.comment,
        "time": rfc3339(d.time_ns),
        "source": d.source,
        "task": {
            "agent_id": None if bare else v.agent_id,
            "task_name": v.task_name,
            "status": None if bare else v.status,
            "trace_id": v.trace_id or None,
        },
    }


def encode(body: dict[str, Any]) -> bytes:
    """Compact JSON; ASCII-only, so text with lone surrogates still encodes."""
    return json.dumps(body, separators=(",", ":")).encode("ascii")
