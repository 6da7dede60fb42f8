"""``droid exec``'s output under ``spanvisor run``: ``-o stream-json``
lines. Unless the user chose a format, the launcher asks for
``stream-json`` and shows the answer (its ``completion`` line's
``finalText``), as its text output does. A ``completion`` ends a run; an
``error`` line fails it (the ``agent_loop``'s message: the API's, e.g.
``401 …``; then the CLI's own ``Exec failed``), and it exits 1."""

from __future__ import annotations

from typing import Any

from spanvisor.clis.output import Ending, RunOutput, by_line


def read(out: RunOutput, text: str) -> str | None:
    return by_line(out, text, _line)


def unsaid(out: RunOutput, program: str, code: int, title: str) -> Ending | None:
    del out
    return ("cancelled", None, f"{title} ended without finishing its run") if code == 0 else None


def _line(out: RunOutput, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    if kind == "error":
        out.saw_result, out.failed = True, True
        said = doc.get("message")
        if out.error is None or doc.get("source") == "agent_loop":
            out.error = said if isinstance(said, str) and said.strip() else "the run failed"
        return None
    if kind == "completion":
        # Droid prints one only for a run that did not fail.
        out.saw_result, out.failed, out.error = True, False, None
        final = doc.get("finalText")
        return final.strip() + "\n" if isinstance(final, str) and final.strip() else None
    return None
