"""Qwen Code's ``-p`` output under ``spanvisor run``: Claude Code's
``stream-json`` (``result`` with ``is_error``, ``subtype``; an error's
message in ``error.message``). Unless the user chose an
``--output-format``, the launcher asks for ``stream-json`` and shows the
result's text, as Qwen Code's text output does. An exit 0 with no result
is an error."""

from __future__ import annotations

from typing import Any

from spanvisor.clis.output import Ending, RunOutput, by_line


def read(out: RunOutput, text: str) -> str | None:
    return by_line(out, text, _line)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    return ("error", f"{program} exited without a result", "Failed") if code == 0 else None


def _line(out: RunOutput, doc: dict[str, Any]) -> str | None:
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
