"""A task's work as a unified diff: an ``agent.diff`` event (``spanvisor run``
sends the session's working tree's, :mod:`spanvisor.launcher.diff`; any
agent may say its own) becomes a ``DiffUpdated`` carrying it whole.

Each diff replaces the last, so a sink shows the newest (Slack: the code
channel's diff tab). The text is the agent's: secrets are redacted here,
whatever the sender did, and a diff over :data:`MAX_DIFF_CHARS` is clipped
at the end of the last file that fits (``clipped``; the files count stays
the sender's). The same diff said again (a replay, an unchanged tree) is
no event. It is not a task's state: its view does not carry it, so every
other event of the task stays as small as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from spanvisor.events import DiffUpdated, Event
from spanvisor.redaction import redact
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking.record import TaskRecord

MAX_DIFF_CHARS = 256 * 1024  # the receiver keeps this much of agent.diff.text (vocabulary.LONG_STRINGS)
MAX_FILES = 1_000_000


def clip(diff: str, limit: int = MAX_DIFF_CHARS) -> tuple[str, bool]:
    """``diff`` within ``limit`` characters, cut before the first file that
    does not fit (a file's part starts at ``diff --git``); one file longer
    than the limit is cut at a line's end. (text, whether it was cut)."""
    if len(diff) <= limit:
        return diff, False
    head = diff[:limit]
    cut = head.rfind("\ndiff --git ")
    if cut <= 0:
        cut = head.rfind("\n")
    return (head[: cut + 1] if cut > 0 else ""), True


def updated(state: TaskRecord, event_id: str, now: int, attrs: Mapping[str, Any], notes: list[str]) -> list[Event]:
    """``DiffUpdated`` for an ``agent.diff`` event whose diff is new to the task."""
    raw = attrs.get(cv.DIFF_TEXT)
    if not isinstance(raw, str):
        sz.note(notes, cv.DIFF_TEXT, "not a string, the diff was ignored")
        return []
    text, clipped = clip(redact(raw))
    files = attrs.get(cv.DIFF_FILES)
    if not isinstance(files, int) or isinstance(files, bool) or not 0 <= files <= MAX_FILES:
        files = text.count("\ndiff --git ") + text.startswith("diff --git ")
    said_clipped = attrs.get(cv.DIFF_CLIPPED)
    clipped = clipped or said_clipped is True
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    if digest == state.diff_digest:
        return []
    state.diff_digest = digest
    t = state.next_time(now)
    return [
        DiffUpdated(
            event_id=event_id,
            time_ns=t,
            task=state.view,
            notes=tuple(notes),
            diff=text,
            files=files,
            clipped=clipped,
            digest=digest,
        )
    ]


__all__ = ["MAX_DIFF_CHARS", "clip", "updated"]
