"""Cline's output under ``spanvisor run``: ``--json`` lines; ``run_result``
(``finishReason`` completed, error, aborted) ends a run; ``run_aborted``
says who stopped it: a signal (``local_abort``) or a hook's cancel
(``external_abort``). Unless the user chose ``--json``, the launcher asks
for it and shows the agent's text and the run's error. It exits 0 when it
is signalled, with no run result (cancelled)."""

from __future__ import annotations

import sys
from typing import Any

from spanvisor.clis.output import Ending, RunOutput, as_dict, by_line


def read(out: RunOutput, text: str) -> str | None:
    return by_line(out, text, _line)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    if code != 0:
        return None
    return "cancelled", None, f"{title} ended without a run result (it exits 0 when it is signalled)"


def _line(out: RunOutput, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    if kind == "run_aborted":
        if doc.get("reason") == "local_abort":
            out.interrupted = True  # a signal (SIGTERM: it finished the command it ran first)
        else:
            # A hook's cancel (the gate's answer to a denied call that is not
            # a shell command, or to a failure): the run was stopped, not finished.
            out.saw_result, out.failed = True, True
            out.error = "its PreToolUse hook stopped the run (the gate denied a call, or could not answer)"
        return None
    if kind == "error" and isinstance(doc.get("message"), str):
        out.error = out.error or " ".join(doc["message"].split())
        return None
    if kind == "run_result":
        out.saw_result = True
        reason = doc.get("finishReason")
        if reason == "aborted":
            out.failed = True
            out.error = out.error or "its run was aborted"
        elif reason != "completed":
            out.failed = True
            said = doc.get("text")
            out.error = (
                (said if isinstance(said, str) and said.strip() else None) or out.error or f"finish reason {reason}"
            )
            if out.kind == "text":
                print(f"Error: {out.error}", file=sys.stderr, flush=True)
        return None
    event = as_dict(doc.get("event"))
    if kind == "agent_event" and event.get("type") == "content_end" and event.get("contentType") == "text":
        said = event.get("text")
        return str(said).rstrip("\n") + "\n" if isinstance(said, str) and said.strip() else None
    return None
