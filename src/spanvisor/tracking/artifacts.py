"""Artifacts a span names: an ``agent.artifact`` event, or entries of the
``agent.artifacts`` attribute (a URI or a plain name each)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from spanvisor.events import Artifact
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz


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
