"""What one webhook says: a HumanIntervention as compact JSON. Only applied
ones are sent (an orchestrator acting on ``retry`` must never see a retry
that was refused; the body says ``"outcome":"applied"`` all the same, as the
event stream's, which sends refused ones too); task events (TaskStarted …
TaskFinished, TaskCorrected) are not.

Ids, the decision and the person's own comment, and the task's names and
status. Agent text (the task name) goes in as a plain JSON string: the
receiver is a program, not a chat, so nothing is escaped beyond JSON. For a
task this process does not track (``known=False``, e.g. a retry of a task that
finished and was forgotten) the view may carry only ids: the fields it does
not know are null rather than placeholders. An answer quotes the question
it answered (``request``: as the agent asked it, cut to
:data:`QUESTION_LIMIT` characters, and its digest), and names the run.
The body is built in the core (:mod:`spanvisor.stream.body`), one schema
with the event stream's.
"""

from __future__ import annotations

from typing import Any

from spanvisor.events import Event, HumanIntervention
from spanvisor.stream.body import INTERVENTION_TYPE as TYPE
from spanvisor.stream.body import QUESTION_LIMIT, decides, encode, intervention_body, rfc3339


def wanted(event: Event, actions: tuple[str, ...]) -> bool:
    """An applied intervention of one of ``actions`` (all when empty) that
    settles what it names: one vote of two is no approval an orchestrator
    may act on (the event stream still shows it)."""
    return (
        isinstance(event, HumanIntervention)
        and event.outcome == "applied"
        and decides(event)
        and (not actions or event.decision.action in actions)
    )


def payload(event: HumanIntervention) -> dict[str, Any]:
    """The intervention's public body (:mod:`spanvisor.stream.body`): the
    event stream sends the same JSON."""
    return intervention_body(event)


__all__ = ["QUESTION_LIMIT", "TYPE", "encode", "payload", "rfc3339", "wanted"]
