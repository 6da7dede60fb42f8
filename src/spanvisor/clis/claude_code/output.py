"""Claude Code's ``-p`` output under ``spanvisor run``.

Unless the user chose an ``--output-format``, the launcher asks for
``stream-json`` (with ``--verbose``, which it requires) and shows the
result line's ``result`` text, which is what the default text format
prints; a user's own ``stream-json`` or ``json`` is passed through and
read too. The result's ``is_error``, ``subtype`` and ``terminal_reason``
say how the run ended; a ``Bash`` call that made a pull request
(``tool_use``, then its ``tool_result``) says which (:mod:`..pullrequest`).
Interrupted by SIGINT it exits 0 with no result
(its stream says "[Request interrupted by user]") or with a result whose
``terminal_reason`` is ``aborted_streaming`` (or ``aborted_tools``):
cancelled.
"""

from __future__ import annotations

from typing import Any

from spanvisor.clis import pullrequest
from spanvisor.clis.output import Ending, RunOutput, buffered, document, json_object

# Its shell tool: what makes a pull request (gh pr create) runs there.
_SHELLS = frozenset({"Bash"})


def read(out: RunOutput, text: str) -> str | None:
    if out.kind == "json":
        return buffered(out, text)
    doc = json_object(text)
    if doc is None:
        return text  # not ours to hide
    shown: str | None = text if out.kind == "stream" else None
    if doc.get("type") == "user" and _interrupted(doc):
        out.interrupted = True
    if doc.get("type") in ("assistant", "user"):
        out.pull_request = pullrequest.from_messages(out.notes, doc, _SHELLS) or out.pull_request
    if doc.get("type") == "result":
        _result(out, doc)
        if out.kind == "text":
            result = doc.get("result")
            shown = (result if isinstance(result, str) else "") + "\n"
    return shown


def done(out: RunOutput) -> None:
    if out.kind == "json":
        doc = document(out)
        if doc is not None:
            _result(out, doc)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    return ("error", f"{program} exited without a result", "Failed") if code == 0 else None


def _result(out: RunOutput, doc: dict[str, Any]) -> None:
    out.saw_result = True
    subtype = doc.get("subtype")
    reason = doc.get("terminal_reason")
    if isinstance(reason, str) and reason.startswith("aborted"):
        # error_during_execution / aborted_streaming (or _tools): stopped
        # by SIGINT while it streamed or ran a tool; not a failure.
        out.interrupted = True
    if doc.get("is_error") is True or (isinstance(subtype, str) and subtype != "success"):
        out.failed = True
        result = doc.get("result")
        parts = [str(x) for x in (subtype if subtype != "success" else None, reason) if x]
        said = result if isinstance(result, str) and result else None
        out.error = ": ".join([*parts, said] if said else parts) or "the result says is_error"


def _interrupted(doc: dict[str, Any]) -> bool:
    """A stream-json ``user`` message Claude Code writes when SIGINT stops it."""
    msg = doc.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    parts = content if isinstance(content, list) else [content]
    return any(
        isinstance(t, str) and t.startswith("[Request interrupted by user")
        for p in parts
        for t in ((p.get("text") if isinstance(p, dict) else p),)
    )
