"""Gemini CLI's ``-p`` output under ``spanvisor run``.

Unless the user chose an ``--output-format``, the launcher asks for
``stream-json`` and shows the assistant's text as it streams (what the
default text format prints), then reads the ``result`` event (``status``
success or error, the error's message). A user's own ``json`` (one
document: ``response``, or ``error``) or ``stream-json`` is passed through
and read too. Its worker exits 0 with no result when signalled: cancelled.
A ``run_shell_command`` call that made a pull request (its ``tool_use``,
then its ``tool_result`` by ``tool_id``) says which (:mod:`..pullrequest`).
"""

from __future__ import annotations

import sys
from typing import Any

from spanvisor.clis import pullrequest
from spanvisor.clis.output import Ending, RunOutput, buffered, document, gist, json_object


def read(out: RunOutput, text: str) -> str | None:
    if out.kind == "json":
        return buffered(out, text)
    doc = json_object(text)
    if doc is None:
        return text if out.kind == "stream" or text.strip() else None  # not ours to hide
    kind = doc.get("type")
    if kind == "result":
        _result(out, doc)
    elif kind in ("tool_use", "tool_result"):
        _pull_request(out, doc)
    if out.kind == "stream":
        return text
    if kind == "message" and doc.get("role") == "assistant" and isinstance(doc.get("content"), str):
        said: str = doc["content"]
        if said:
            out.notes["open_line"] = not said.endswith("\n")
        return said or None
    if kind == "result":
        if out.failed and out.error:
            print(f"Error: {out.error}", file=sys.stderr, flush=True)
        return "\n" if out.notes.get("open_line") else None
    return None


def done(out: RunOutput) -> None:
    if out.kind == "json":
        doc = document(out)
        if doc is not None and ("response" in doc or "error" in doc):
            _result(out, {"status": "error" if doc.get("error") else "success", "error": doc.get("error")})


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    if code == 0:
        # Its worker exits 0, result unsaid, when a signal stops it (measured).
        return "cancelled", None, f"{title} ended without a result (its worker exits 0 when it is signalled)"
    return None


def _result(out: RunOutput, doc: dict[str, Any]) -> None:
    out.saw_result = True
    err = doc.get("error")
    if doc.get("status") not in (None, "success") or err:
        out.failed = True
        msg = err.get("message") if isinstance(err, dict) else err
        out.error = gist(msg) if isinstance(msg, str) and msg.strip() else "the result says error"


def _pull_request(out: RunOutput, doc: dict[str, Any]) -> None:
    """A shell call's command held by its id; its result read for the address."""
    if doc.get("type") == "tool_use" and doc.get("tool_name") == "run_shell_command":
        args = doc.get("parameters")
        pullrequest.hold(out.notes, doc.get("tool_id"), args.get("command") if isinstance(args, dict) else None)
    elif doc.get("type") == "tool_result":
        command = pullrequest.waiting(out.notes).pop(str(doc.get("tool_id")), None)  # let go whatever its result
        if doc.get("status") == "success":
            out.pull_request = pullrequest.made_by(command, doc.get("output")) or out.pull_request
