"""pi's ``-p`` output under ``spanvisor run``: ``--mode json`` lines.

Unless the user chose a ``--mode``, the launcher asks for ``json`` and
shows the last answer's text, as its text output does. In ``json`` mode pi
exits 0 whatever the model did: a run is read from its lines. Each
``agent_end`` ends a run (its last assistant message's ``stopReason``:
``stop`` complete, ``error`` failed with its ``errorMessage``, ``aborted``
interrupted); a retried run says ``auto_retry_start`` and runs again,
``auto_retry_end`` (``success``, ``finalError``) says how the retries
ended. It exits 0 with no ``agent_end`` when an extension never answered:
an error. A signal ends it without a word (SIGTERM 143, SIGINT killed).
"""

from __future__ import annotations

import sys
from typing import Any

from spanvisor.clis.output import Ending, RunOutput, as_dict, by_line


def read(out: RunOutput, text: str) -> str | None:
    return by_line(out, text, _line)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    del out, title
    return ("error", f"{program} exited without finishing its run", "Failed") if code == 0 else None


def done(out: RunOutput) -> None:
    if out.kind == "text" and out.failed and out.error:
        print(out.error, file=sys.stderr, flush=True)  # what its text output says of a failed run


def exit_status(out: RunOutput, code: int) -> int:
    """Its text output (``-p``) exits 1 on a run that failed or was aborted;
    the ``json`` mode the launcher asked for in its place exits 0 whatever
    happened."""
    return 1 if out.kind == "text" and code == 0 and (out.failed or out.interrupted) else code


def _line(out: RunOutput, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    if kind == "auto_retry_start":
        out.saw_result, out.failed, out.error = False, False, None  # it runs again
    elif kind == "auto_retry_end" and doc.get("success") is False:
        out.saw_result, out.failed = True, True
        said = doc.get("finalError")
        out.error = said if isinstance(said, str) and said.strip() else out.error or "its retries failed"
    elif kind == "agent_end":
        said = [m for m in doc.get("messages") or [] if isinstance(m, dict) and m.get("role") == "assistant"]
        last = said[-1] if said else {}
        reason = last.get("stopReason")
        out.saw_result = True
        if reason == "aborted":
            out.saw_result, out.interrupted = False, True
        elif reason == "error":
            out.failed = True
            message = last.get("errorMessage")
            out.error = message if isinstance(message, str) and message.strip() else "the model call failed"
        else:
            out.failed, out.error = False, None
    elif kind == "message_end":
        message = as_dict(doc.get("message"))
        # What its text output prints: an answer that ended, cut at its length too.
        if message.get("role") == "assistant" and message.get("stopReason") in ("stop", "length"):
            parts = [p.get("text") for p in message.get("content") or [] if isinstance(p, dict)]
            shown = "\n".join(t for t in parts if isinstance(t, str) and t.strip()).strip()
            return shown + "\n" if shown else None
    return None
