"""Artifacts a span names: an ``agent.artifact`` event, or entries of the
``agent.artifacts`` attribute (a URI or a plain name each); each new one is
an ``ArtifactAdded`` (the concern of a task's artifacts; its results are
:mod:`.results`')."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from spanvisor.events import Artifact, ArtifactAdded, Event
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.record import TaskRecord


def from_event(attrs: Mapping[str, Any], notes: list[str]) -> Artifact:
    name = sz.text(attrs.get(cv.ARTIFACT_NAME) or attrs.get("name"), cv.ARTIFACT_NAME, notes, 500)
    uri = sz.text(attrs.get(cv.ARTIFACT_URI) or attrs.get("uri"), cv.ARTIFACT_URI, notes, 3000)
    kind = sz.name(attrs.get(cv.ARTIFACT_KIND) or attrs.get("kind"), cv.ARTIFACT_KIND, notes)
    return Artifact(name or uri or "artifact", uri, kind)


def new_from_list(raw: Any, known: Iterable[Artifact], notes: list[str]) -> list[tuple[str, Artifact]]:
    """(entry, artifact) for each entry of ``agent.artifacts`` not known yet."""
    if raw is None:
        return []
    seen = {a.name for a in known} | {a.uri for a in known if a.uri}
    out = []
    for item in sz.string_list(raw, cv.ARTIFACTS, notes):
        if item not in seen:
            uri = item if "://" in item else None
            out.append((item, Artifact(item.rsplit("/", 1)[-1] if uri else item, uri)))
            seen.add(item)
    return out


def from_list(state: TaskRecord, raw: Any, now: int, notes: list[str]) -> list[Event]:
    """``ArtifactAdded`` for each new entry of a span's ``agent.artifacts``."""
    if raw is None:
        return []
    out: list[Event] = []
    for item, art in new_from_list(raw, state.working.artifacts, notes):
        out.extend(add(state, art, state.event_id("artifact", item), now, notes))
    return out


def add(state: TaskRecord, art: Artifact, event_id: str, now: int, notes: list[str]) -> list[Event]:
    """``ArtifactAdded`` for an artifact the task does not list yet (at most
    ``sanitize.MAX_LIST``)."""
    known = state.working.artifacts
    if art in known or len(known) >= sz.MAX_LIST:
        return []
    state.update(artifacts=(*known, art))
    t = state.next_time(now)
    return [ArtifactAdded(event_id=event_id, time_ns=t, task=state.view, notes=tuple(notes), artifact=art)]


__all__ = ["add", "from_event", "from_list", "new_from_list"]
