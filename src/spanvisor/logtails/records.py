"""A log record as producers hand it to the log tails (:class:`LogIn`), and
how records read as a task's tail: severities, clipping on the way in, and
the redacted, sanitised lines a ``TaskFinished`` carries. Shared by the
producers (in-process processor and exporter, the receiver's OTLP logs) and
:mod:`spanvisor.logtails.tails`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from spanvisor.events import LogLine
from spanvisor.redaction import redact
from spanvisor.spans import sanitize as sz

# OTel severity numbers (logs data model): the first of each range.
SEVERITY = {"trace": 1, "debug": 5, "info": 9, "warning": 13, "warn": 13, "error": 17, "fatal": 21, "critical": 21}
ERROR_SEVERITY = 17
_NAMES = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))
# A record's text is cut here on the way in (bounds what a ring pins) ...
MAX_LINE = 500
# ... and a tail's lines together stay within this many characters.
MAX_TAIL_BYTES = 4096


class LogIn(NamedTuple):
    """One log record as a producer hands it over (no copy of its attributes)."""

    trace_id: int  # 0: none
    span_id: int
    time_ns: int
    severity: int  # OTel severity number; 0 unknown
    level: str | None  # severity text as sent
    logger: str | None  # the instrumentation scope: Python's logger name
    body: Any  # a string, or any OTLP value (made text when the tail is read)
    # Whether the producer knows the record's span is in an open task (the
    # in-process processor does); None: unknown, the trace decides.
    in_task: bool | None = None


def severity_of(text: str | None) -> int:
    """A severity number from a level's name, for senders that give only text."""
    return SEVERITY.get(text.strip().lower(), 0) if text else 0


def level_name(severity: int, text: str | None) -> str:
    for floor, name in _NAMES:
        if severity >= floor:
            return name
    return (sz.name(text, "log.level", []) or "LOG")[:16]


def clip(body: Any) -> Any:
    """A long string body cut on the way in: a ring then pins little."""
    if type(body) is str and len(body) > MAX_LINE:
        return body[:MAX_LINE]
    return body


def lines(records: Sequence[LogIn], size: int) -> tuple[LogLine, ...]:
    """The newest ``size`` records as safe lines, oldest first, together at
    most :data:`MAX_TAIL_BYTES` characters (the newest line is always kept)."""
    out: list[LogLine] = []
    budget = MAX_TAIL_BYTES
    for r in reversed(records[-size:]):
        msg = message(r.body)
        if out and len(msg) > budget:
            break
        msg = msg[:budget]
        budget -= len(msg)
        logger = sz.name(r.logger, "log.logger", []) if r.logger else None
        out.append(LogLine(time_ns=r.time_ns, level=level_name(r.severity, r.level), message=msg, logger=logger))
        if budget <= 0:
            break
    out.reverse()
    return tuple(out)


def message(body: Any) -> str:
    """A record's body as one redacted, sanitised line of text."""
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = body if isinstance(body, str) else str(body)
    clean = sz.text(redact(text[: MAX_LINE * 2]), "log.body", [], MAX_LINE)
    return clean or ""


__all__ = [
    "ERROR_SEVERITY",
    "MAX_LINE",
    "MAX_TAIL_BYTES",
    "SEVERITY",
    "LogIn",
    "clip",
    "level_name",
    "lines",
    "message",
    "severity_of",
]
