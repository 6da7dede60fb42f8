"""How Claude Code's last turn ended, from the end of its transcript
(``transcript_path``, the conversation it keeps as JSON lines, written
before ``SessionEnd``): an API error's message (``isApiErrorMessage``), a
turn it finished (``end_turn``), or one SIGINT interrupted; None when the
last message says none of these (a turn cut off). Read when no
``Stop``/``StopFailure`` answered the prompt: ``StopFailure`` is fired
without waiting, and the CLI exits (ending its hooks) right after
``SessionEnd``, so in ``-p`` mode it rarely gets to say anything."""

from __future__ import annotations

import json
import os

# What is read of a transcript's end, and what Claude Code writes there when
# SIGINT stops a turn.
TAIL = 512 * 1024
_INTERRUPTED = "[Request interrupted by user"


def last_turn(path: str) -> tuple[str, str | None] | None:
    """(state, error) of the last turn the transcript at ``path`` ends with."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL))
            lines = f.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        msg = doc.get("message") if isinstance(doc, dict) else None
        if not isinstance(msg, dict) or doc.get("type") not in ("assistant", "user"):
            continue
        said = _text(msg.get("content"))
        if doc["type"] == "user":
            return ("cancelled", None) if said.startswith(_INTERRUPTED) else None
        if doc.get("isApiErrorMessage") is True:
            return "error", said or "an API error ended the turn"
        if msg.get("stop_reason") == "end_turn":
            return "complete", None
        return None
    return None


def _text(content: object) -> str:
    if isinstance(content, str):
        return content.strip()
    parts = content if isinstance(content, list) else []
    return " ".join(str(p.get("text")) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)).strip()
