"""A point annotation per person's decision (HumanIntervention), created once.

Applied or denied, each intervention is one point at the moment the person
acted, tagged ``spanvisor``, ``intervention``, ``action:<action>``,
``outcome:<outcome>``, the task tag and an intervention tag (plus the agent's
when the task is known here, and the configured extra tags). Created like a
task's annotation: a claim on ``("grafana.intervention", "<task id>/intervention/<id>")``
before the POST, the id put after it, and an ambiguous POST looked up by the
intervention tag before posting again; the key sits under the task's id, so
pruning the task removes it. The text is the person's and the agent's words
stripped of control characters and cut, never escaped (Grafana shows text);
an answer quotes the question it answered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from spanvisor.display.readable import DECISION_STYLE, decided
from spanvisor.events import HumanIntervention
from spanvisor_grafana.errors import TransientError
from spanvisor_grafana.store import GuardedStore
from spanvisor_grafana.text import BASE_TAG, MAX_FIELD, MAX_TAG, clean, clean_tag, fit_tags, ms, task_tag

INTERVENTIONS = "grafana.intervention"
INTERVENTION_TAG = "intervention"
INTERVENTION_HASH_KEY = "intervention-sha256"


def intervention_tag(intervention_id: str) -> str:
    """``intervention:<id>``, or a fixed-length hash of the id when that would
    not fit a tag unchanged (as for the task tag: a cut tag could be shared)."""
    plain = f"{INTERVENTION_TAG}:{intervention_id}"
    if len(plain.encode("utf-8", "surrogatepass")) <= MAX_TAG and clean_tag(plain) == plain:
        return plain
    digest = hashlib.sha256(intervention_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{INTERVENTION_HASH_KEY}:{digest[:32]}"


def state_key(event: HumanIntervention) -> str:
    return f"{event.task_id}/intervention/{event.decision.intervention_id}"


def _who(event: HumanIntervention) -> str:
    d = event.decision
    actor = clean(d.actor_id, 100)
    return f"{clean(d.actor_name, 100)} ({actor})" if d.actor_name and d.actor_name != d.actor_id else actor


def intervention_text(event: HumanIntervention, max_text: int) -> str:
    d = event.decision
    about = f" · approval {clean(d.approval_id, 100)}" if d.approval_id else ""
    via = f" via {clean(d.source, 20)}" if d.source else ""
    if event.outcome == "denied":
        head = f"🚫 {_who(event)} tried to {d.action}{about}{via}: denied"
        if event.reason:
            head += f" ({clean(event.reason, MAX_FIELD)})"
    else:
        head = f"{DECISION_STYLE.get(d.action, ('👤',))[0]} {decided(d.action)} by {_who(event)}{about}{via}"
    lines = [head]
    if event.request is not None:  # what was decided, as the agent asked it
        lines.append(f"Q: “{clean(event.request.question, MAX_FIELD)}”")
    v = event.task
    if v.trace_id:  # a bare view (ids only) names no agent or task
        name = clean(v.task_name or v.task_id, MAX_FIELD)
        lines.append(f"{clean(v.agent_name or v.agent_id, MAX_FIELD)}: {name}")
    else:
        lines.append(f"task {clean(event.task_id, MAX_FIELD)}")
    if d.comment:
        lines.append(f"“{clean(d.comment, MAX_FIELD)}”")
    return clean("\n".join(lines), max_text)


def intervention_payload(
    event: HumanIntervention, extra_tags: Sequence[str], max_text: int, dashboard_uid: str | None
) -> dict[str, Any]:
    d = event.decision
    tags = [
        BASE_TAG,
        INTERVENTION_TAG,
        clean_tag(f"action:{d.action}"),
        clean_tag(f"outcome:{event.outcome}"),
    ]
    if event.task.trace_id:
        tags.append(clean_tag(f"agent:{event.task.agent_id}"))
    former = event.task.former_id
    tags += [task_tag(event.task_id), task_tag(former) if former else "", intervention_tag(d.intervention_id)]
    tags += [clean_tag(t) for t in extra_tags if clean_tag(t)]
    body: dict[str, Any] = {
        "time": ms(d.time_ns or event.time_ns),
        "text": intervention_text(event, max_text),
        "tags": fit_tags(list(dict.fromkeys(t for t in tags if t))),
    }
    if dashboard_uid:
        body["dashboardUID"] = dashboard_uid
    return body


class Annotator(Protocol):
    """What a point needs of the sink that creates it: the sink's settings and
    the claim, POST and lookup it also creates task annotations with. Named
    here so this module does not import the sink that calls it."""

    owner: str
    _lease_s: float
    _extra_tags: tuple[str, ...]
    _max_text: int
    _dashboard_uid: str | None

    def _store(self) -> GuardedStore: ...

    def _mark_uncertain(self, task_id: str) -> None: ...

    async def _create(
        self,
        task_id: str,
        body: Mapping[str, Any],
        *,
        namespace: str = ...,
        tag: str | None = None,
        uncertain: str | None = None,
    ) -> None: ...


async def on_intervention(sink: Annotator, event: HumanIntervention) -> None:
    """Create the point once (per intervention id, across restarts and replicas)."""
    store = sink._store()
    key = state_key(event)
    if await store.get(INTERVENTIONS, key) is not None:
        return
    claim = await store.claim(INTERVENTIONS, key, sink.owner, sink._lease_s)
    if claim.value is not None:
        return
    if not claim.won:
        # Another replica (or a process that died) is creating it: come back
        # with the batch; once its lease lapses the lookup below adopts its POST.
        sink._mark_uncertain(_uncertain_key(key))
        raise TransientError(f"intervention {event.event_id[:80]}: annotation being created elsewhere")
    body = intervention_payload(event, sink._extra_tags, sink._max_text, sink._dashboard_uid)
    await sink._create(
        key,
        body,
        namespace=INTERVENTIONS,
        tag=intervention_tag(event.decision.intervention_id),
        uncertain=_uncertain_key(key),
    )


def _uncertain_key(key: str) -> str:
    # Never equal to a task id the sink also tracks as uncertain.
    return f"{INTERVENTIONS}\x1f{key}"
