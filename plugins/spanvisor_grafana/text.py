"""Annotation payloads built from task events. Pure: no I/O.

Grafana shows annotation text as text, so nothing is escaped; but agent text
can hold control characters and megabytes, so it is stripped and cut.
Tags carry the task id so an ambiguous create (the POST may or may not have
landed) can be found again with a tag query instead of posted twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from spanvisor.display.readable import duration
from spanvisor.display.task import STATUS_STYLE
from spanvisor.events import TaskFinished, TaskView

# C0 and C1 control characters, DEL, and lone surrogates (they make invalid
# JSON for Go's decoder). Newline and tab stay: they format the text.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# Grafana stores a tag's key and value in columns of 100 characters.
MAX_TAG = 100
# Grafana's [annotations] tags_length default: the stored JSON array of the
# tags, in bytes. Over it the whole annotation is refused (400).
MAX_TAGS_BYTES = 500
# What an agent, repo or extra tag keeps when the tags must shrink to fit.
SHRUNK_TAG_BYTES = 60
MAX_FIELD = 500
ELLIPSIS = "…"

BASE_TAG = "spanvisor"


def clean(value: object, limit: int) -> str:
    """Agent text made safe to send: control characters out, cut to ``limit``."""
    s = _CONTROL.sub("", str(value))
    if len(s) > limit:
        s = s[: max(0, limit - 1)] + ELLIPSIS
    return s


def clean_tag(value: object) -> str:
    # Grafana splits "key:value" tags; spaces and control characters are
    # legal but make tags hard to click, so whitespace runs become one space.
    s = " ".join(_CONTROL.sub("", str(value)).split())
    return s[:MAX_TAG]


TASK_HASH_KEY = "task-sha256"
TASK_HASH_HEX = 32


def task_tag(task_id: str) -> str:
    """The tag that finds this task's annotation again, unique per task id.

    ``task:<id>`` when that fits a tag unchanged; otherwise (an id longer
    than the tag limit, or one that cleaning would alter) a fixed-length
    ``task-sha256:<32 hex>`` of the id, because a cut or cleaned tag could be
    shared by two tasks and one would adopt the other's annotation. It has
    its own key, so it can never equal any task's plain ``task:`` tag.
    """
    plain = f"task:{task_id}"
    if len(plain.encode("utf-8", "surrogatepass")) <= MAX_TAG and clean_tag(plain) == plain:
        return plain
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{TASK_HASH_KEY}:{digest[:TASK_HASH_HEX]}"


def run_key(view: TaskView) -> str:
    """Which annotation a view belongs to: one region per run of a task id (a
    task id reused by a new root is a new run, ``TaskView.run_id``)."""
    return f"{view.task_id}/{view.run_id}" if view.run_id else view.task_id


def run_tag(view: TaskView) -> str | None:
    """The tag that finds one run's region again (the task tag is shared by
    every run of a task id, so the drill-down shows them all)."""
    return clean_tag(f"run:{view.run_id}") if view.run_id else None


def tags(view: TaskView, status: str, extra: Sequence[str]) -> list[str]:
    out = [BASE_TAG, clean_tag(f"agent:{view.agent_id}"), clean_tag(f"status:{status}")]
    if view.repo:
        out.append(clean_tag(f"repo:{view.repo}"))
    out.append(task_tag(view.task_id))
    # Renamed by its root: the tag it was found by before stays, so a drill-down
    # or a link made while it showed under its former id still finds the region.
    out.append(task_tag(view.former_id) if view.former_id else "")
    out.append(run_tag(view) or "")
    out.extend(clean_tag(t) for t in extra if clean_tag(t))
    # Order kept, duplicates dropped: Grafana would store them twice.
    return fit_tags(list(dict.fromkeys(t for t in out if t)))


def tags_bytes(tags: Sequence[str]) -> int:
    """The size of the JSON array Grafana stores for these tags, in bytes."""
    return 2 + sum(len(t.encode("utf-8", "surrogatepass")) + 2 for t in tags) + max(0, len(tags) - 1)


def fit_tags(tags: list[str]) -> list[str]:
    """Tags within MAX_TAGS_BYTES: the base, agent and status tags and the task
    tag stay whole (the task tag finds the annotation again); others are cut
    to a few bytes, then dropped from the end, until the array fits."""
    if tags_bytes(tags) <= MAX_TAGS_BYTES:
        return tags
    # The intervention tags find an intervention's point again, like the task tag.
    keep = ("task:", f"{TASK_HASH_KEY}:", "status:", "intervention:", "intervention-sha256:", "outcome:")
    fixed = {BASE_TAG, "intervention"} | {t for t in tags if t.startswith(keep)}
    out = [t if t in fixed else _cut_bytes(t, SHRUNK_TAG_BYTES) for t in tags]
    while tags_bytes(out) > MAX_TAGS_BYTES:
        loose = [i for i, t in enumerate(out) if t not in fixed]
        if not loose:
            break
        del out[loose[-1]]
    return list(dict.fromkeys(t for t in out if t))


def _cut_bytes(s: str, limit: int) -> str:
    raw = s.encode("utf-8", "surrogatepass")
    return s if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _title(view: TaskView) -> str:
    name = clean(view.task_name or view.task_id, MAX_FIELD)
    agent = clean(view.agent_name or view.agent_id, MAX_FIELD)
    return f"{agent}: {name}"


def start_text(view: TaskView, max_text: int) -> str:
    lines = [f"{STATUS_STYLE['starting'][1]} {_title(view)} started"]
    if view.repo:
        lines.append(f"repo: {clean(view.repo, MAX_FIELD)}")
    if view.message:
        lines.append(clean(view.message, MAX_FIELD))
    return clean("\n".join(lines), max_text)


def finish_text(event: TaskFinished, max_text: int) -> str:
    v = event.task
    emoji = STATUS_STYLE[event.outcome][1]
    lines = [
        f"{emoji} {_title(v)} {event.outcome} in {duration(event.duration_s)}",
        f"tokens in {v.input_tokens:,} / out {v.output_tokens:,}",
    ]
    if v.repo:
        lines.append(f"repo: {clean(v.repo, MAX_FIELD)}")
    if event.outcome == "error":
        what = clean(event.error_type or "error", MAX_FIELD)
        msg = clean(event.error_message, MAX_FIELD * 2) if event.error_message else ""
        lines.append(f"{what}: {msg}" if msg else what)
    if v.artifacts:
        names = ", ".join(clean(a.name, 100) for a in v.artifacts[:10])
        more = f" (+{len(v.artifacts) - 10})" if len(v.artifacts) > 10 else ""
        lines.append(f"artifacts: {names}{more}")
    return clean("\n".join(lines), max_text)


def ms(ns: int) -> int:
    return max(1, ns // 1_000_000)


def start_payload(
    view: TaskView, extra_tags: Sequence[str], max_text: int, dashboard_uid: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "time": ms(view.started_ns),
        "text": start_text(view, max_text),
        "tags": tags(view, view.status, extra_tags),
    }
    if dashboard_uid:
        body["dashboardUID"] = dashboard_uid
    return body


def finish_payload(
    event: TaskFinished, extra_tags: Sequence[str], max_text: int, dashboard_uid: str | None
) -> dict[str, Any]:
    """The whole region: a PATCH body, and a POST body when no start was posted."""
    v = event.task
    start = ms(v.started_ns or event.time_ns)
    end = max(start, ms(v.ended_ns or event.time_ns))
    body: dict[str, Any] = {
        "time": start,
        "timeEnd": end,
        "text": finish_text(event, max_text),
        "tags": tags(v, event.outcome, extra_tags),
    }
    if dashboard_uid:
        body["dashboardUID"] = dashboard_uid
    return body
