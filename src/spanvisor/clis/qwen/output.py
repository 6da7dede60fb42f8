"""Qwen Code's ``-p`` output under ``spanvisor run``: Claude Code's
``stream-json`` (``result`` with ``is_error``, ``subtype``; an error's
message in ``error.message``). Unless the user chose an
``--output-format``, the launcher asks for ``stream-json`` and shows the
result's text, as Qwen Code's text output does. An exit 0 with no result
is an error. A ``run_shell_command`` call that made a pull request (its
``tool_use``, then its ``tool_result``) says which (:mod:`..pullrequest`)."""

from __future__ import annotations

from typing import Any

from spanvisor.clis import pullrequest
from spanvisor.clis.output import Ending, RunOutput, by_line

# Its shell tool (Gemini CLI's, which it was forked from).
_SHELLS = frozenset({"run_shell_command"})


def read(out: RunOutput, text: str) -> str | None:
    return by_line(out, text, _line)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    return ("error", f"{program} exited without a result", "Failed") if code == 0 else None


def _line(out: RunOutput, doc: dict[str, Any]) -> str | None:
    if doc.get("type") in ("assistant", "user"):
        out.pull_request = pullrequest.from_messages(out.notes, doc, _SHELLS) or out.pull_request
    if doc.get("type") != "result":
        return None
    out.saw_result = True
    err = doc.get("error")
    msg = err.get("message") if isinstance(err, dict) else None
    if doc.get("is_error") is True or doc.get("subtype") not in (None, "success"):
        out.failed = True
        parts = [str(x) for x in (doc.get("subtype"), msg or doc.get("result")) if isinstance(x, str) and x]
        out.error = ": ".join(parts) or "the result says is_error"
        return None
    said = doc.get("result")
    return (said if isinstance(said, str) else "") + "\n"
