"""Copilot CLI's ``-p`` output under ``spanvisor run``: ``--output-format
json`` lines; ``result`` (its ``exitCode``) ends a run, ``session.error``
says why one failed; a signal leaves no ``result`` and exit status 0
(cancelled). Unless the user chose a format, the launcher asks for
``json`` and shows the assistant's messages."""

from __future__ import annotations

from typing import Any

from spanvisor.clis.output import Ending, RunOutput, as_dict, by_line


def read(out: RunOutput, text: str) -> str | None:
    return by_line(out, text, _line)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    return (
        ("cancelled", None, f"{title} ended without a result (it exits 0 when it is signalled)") if code == 0 else None
    )


def _line(out: RunOutput, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    data = as_dict(doc.get("data"))
    if kind == "session.error":
        out.failed = True
        msg = data.get("message")
        out.error = " ".join(msg.split()) if isinstance(msg, str) and msg.strip() else "the session failed"
    elif kind == "abort":
        out.interrupted = True
    elif kind == "result":
        out.saw_result = True
        code = doc.get("exitCode")
        if isinstance(code, int) and code != 0:
            out.failed = True
            out.error = out.error or f"its result says exit code {code}"
    elif kind == "assistant.message" and isinstance(data.get("content"), str) and data["content"].strip():
        return str(data["content"]).rstrip("\n") + "\n"
    return None
