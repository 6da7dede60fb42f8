"""Codex's ``exec --json`` output under ``spanvisor run`` (read only when
the user asked for it: its default output is for people).

Each JSONL event is passed through. The last ``turn.failed`` or
``turn.completed`` says how the run ended; an ``error`` event alone does
not (Codex also sends one for a stream it reconnects, "Reconnecting...
1/5", and then completes), but its message is the error when no
``turn.failed`` says one or the exit code is not 0. An API's error body
(OpenAI's ``{"error": {"message", "type"}}``, which Codex passes on as it
came) reads as ``type: message``. No turn result is an error, but for an
exit code of 1 with no error said, which is how an interrupted Codex may
end: cancelled. A ``command_execution`` item that made a pull request
(its ``command``, ``/bin/bash -lc '…'``, and ``aggregated_output``, as
0.169.0 writes them) says which (:mod:`..pullrequest`).
"""

from __future__ import annotations

from spanvisor.clis import pullrequest
from spanvisor.clis.output import Ending, RunOutput, gist, json_object


def read(out: RunOutput, text: str) -> str | None:
    doc = json_object(text)
    if doc is None:
        return text
    kind = doc.get("type")
    err = doc.get("error")
    msg = err.get("message") if isinstance(err, dict) else doc.get("message")
    said = gist(msg) if isinstance(msg, str) and msg.strip() else None
    if kind == "error":
        out.error = said or out.error
    elif kind == "turn.failed":
        out.saw_result, out.failed = True, True
        out.error = said or out.error or "the turn failed"
    elif kind == "turn.completed":
        out.saw_result, out.failed = True, False
    elif kind == "item.completed":
        item = doc.get("item")
        if isinstance(item, dict) and item.get("type") == "command_execution" and item.get("exit_code") in (0, None):
            out.pull_request = (
                pullrequest.made_by(item.get("command"), item.get("aggregated_output")) or out.pull_request
            )
    return text


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    if code == 1 and not out.error:
        # Measured: interrupted mid-turn, Codex exits 130 or 1 (by timing),
        # saying nothing; a failure of its own says an error or a failed turn.
        return "cancelled", None, f"{title} ended mid-turn with exit code 1 and no error (as it does when interrupted)"
    if code == 0:
        return "error", f"{program} exited before its turn ended", "Failed"
    return None
