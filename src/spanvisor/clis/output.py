"""What a run's machine-readable output said of how it ended: the state
each adapter's reader fills (:meth:`spanvisor.clis.adapter.Adapter.read_output`)
while ``spanvisor run`` shows the run, and the small readers they share.

A mode is ``<cli>-<kind>``: ``text``, the launcher asked for the CLI's
machine-readable output and shows what the reader returns (what the CLI's
own text output prints); ``stream`` and ``json``, the user's own format,
passed through and read all the same; ``passthrough``, nothing is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PASSTHROUGH = "passthrough"
KINDS = ("text", "stream", "json")
# (status, error, message) of a run: how :func:`spanvisor.launcher.results.end_of` says it ended.
Ending = tuple[str, str | None, str]


def split(m: str) -> tuple[str, str]:
    """(the CLI's name, the kind) of a mode; ("", "passthrough") for passthrough."""
    cli, _, kind = m.rpartition("-")
    return (cli, kind) if cli and kind in KINDS else ("", PASSTHROUGH)


@dataclass
class RunOutput:
    """What the output said so far."""

    mode: str
    failed: bool = False
    error: str | None = None
    saw_result: bool = False
    # The CLI said a signal interrupted it (its user's Ctrl-C).
    interrupted: bool = False
    # The web address of the pull request the session made last (.pullrequest).
    pull_request: str | None = None
    # What a reader keeps between lines (a json mode's lines, whether the
    # text shown so far ended its line).
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return split(self.mode)[1]


def json_object(text: str) -> dict[str, Any] | None:
    """One line as a JSON object; None when it is none."""
    s = text.strip()
    if not s.startswith("{"):
        return None
    try:
        doc = json.loads(s)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def leading_object(text: str) -> dict[str, Any] | None:
    """The one JSON document a ``json`` output holds, from its first ``{``,
    whatever follows it: a CLI's exporter may print after its result (Gemini
    CLI's "Export failed … Not Found" when its metrics have nowhere to go),
    and that must not make a finished run read as one without a result."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def gist(message: str) -> str:
    """An error message, with an API error body in it (after any prefix)
    read as ``type: message``; any other text as it is."""
    start = message.find("{")
    if start >= 0:
        try:
            doc, _ = json.JSONDecoder().raw_decode(message[start:])
        except ValueError:
            doc = None
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
            kind = err.get("type") or err.get("code")
            said = f"{kind}: {err['message']}" if isinstance(kind, str) and kind else err["message"]
            return (message[:start].strip() + " " + said).strip()
    return message.strip()


def buffered(out: RunOutput, text: str) -> str:
    """A ``json`` kind's line, kept for its one document (:func:`document`), shown as it came."""
    out.notes.setdefault("lines", []).append(text)
    return text


def document(out: RunOutput) -> dict[str, Any] | None:
    """The one document a ``json`` kind's lines held (:func:`leading_object`)."""
    return leading_object("".join(out.notes.get("lines", [])))


def as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def by_line(out: RunOutput, text: str, read: Callable[[RunOutput, dict[str, Any]], str | None]) -> str | None:
    """A JSON-lines output: each object line to ``read``, which says what
    the ``text`` kind shows of it; the other kinds show every line as it
    came, and the ``text`` kind a line that is no JSON unless it is blank."""
    doc = json_object(text)
    if doc is None:
        return text if out.kind != "text" or text.strip() else None
    shown = read(out, doc)
    return shown if out.kind == "text" else text


__all__ = [
    "KINDS",
    "PASSTHROUGH",
    "Ending",
    "RunOutput",
    "as_dict",
    "buffered",
    "by_line",
    "document",
    "gist",
    "json_object",
    "leading_object",
    "split",
]
