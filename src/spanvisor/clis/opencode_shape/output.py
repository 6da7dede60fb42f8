"""The ``run`` output of a CLI of OpenCode's shape under ``spanvisor run``: ``--format json``
lines; an ``error`` line (its ``data.message``) fails a run; a
``step_finish`` whose reason is not ``tool-calls`` ends one. Unless the
user chose a format, the launcher asks for ``json`` and shows the text
parts, as its text output does. An exit 0 before its last step finished
is a signal's (cancelled). A finished ``bash`` call (``tool_use``: its
``state.input.command`` and ``state.output``) that made a pull request
says which (:mod:`..pullrequest`)."""

from __future__ import annotations

from typing import Any

from spanvisor.clis import pullrequest
from spanvisor.clis.output import Ending, RunOutput, as_dict, by_line


def read(out: RunOutput, text: str) -> str | None:
    return by_line(out, text, _line)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    return ("cancelled", None, f"{title} ended without finishing its last step") if code == 0 else None


def _line(out: RunOutput, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    part = as_dict(doc.get("part"))
    if kind == "error":
        out.saw_result, out.failed = True, True
        err = as_dict(doc.get("error"))
        data = as_dict(err.get("data"))
        msg = data.get("message") or err.get("message") or err.get("name")
        status = data.get("statusCode")
        said = msg if isinstance(msg, str) and msg.strip() else "the run failed"
        name = err.get("name")
        out.error = (f"{name}: {said}" if isinstance(name, str) and name else said) + (
            f" (HTTP {status})" if status else ""
        )
        return None
    if kind == "step_finish" and part.get("reason") not in ("tool-calls", None):
        out.saw_result = True
    if kind == "tool_use" and part.get("tool") == "bash":
        state = as_dict(part.get("state"))
        if state.get("status") == "completed":
            made = pullrequest.made_by(as_dict(state.get("input")).get("command"), state.get("output"))
            out.pull_request = made or out.pull_request
    if kind == "text" and isinstance(part.get("text"), str) and part["text"].strip():
        return str(part["text"]).strip() + "\n"
    return None
