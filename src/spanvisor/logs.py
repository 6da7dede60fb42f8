"""Logging on the standard library: human lines or JSON lines, no secrets,
and a repeated error logged once per interval with a count.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from spanvisor.redaction import redact


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_REDACT = RedactingFilter()


def install_redaction() -> None:
    """Put the redacting filter on every ``spanvisor*`` logger that exists.

    A logger's filters do not apply to its children's records, and an agent
    that never calls :func:`configure_logging` logs through its own handlers:
    so each of our loggers gets the filter itself. Idempotent; called again
    once sinks have started (their modules create loggers lazily).
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        ours = name.split(".", 1)[0].startswith("spanvisor") and isinstance(logger, logging.Logger)
        if ours and _REDACT not in logger.filters:  # type: ignore[union-attr]
            logger.addFilter(_REDACT)  # type: ignore[union-attr]


class RepeatFilter(logging.Filter):
    """Lets the first of identical warnings/errors through, then one summary
    per ``interval_s`` saying how many were suppressed."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # The formatted text, not the template: different drops share one template.
        key = (record.name, record.getMessage())
        now = time.monotonic()
        first, count = self._seen.get(key, (0.0, -1))
        if count < 0 or now - first >= self.interval_s:
            if count > 0:
                record.msg = f"{record.getMessage()} (repeated {count} more times in the last {self.interval_s:.0f}s)"
                record.args = None
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:
                self._seen.clear()
            return True
        self._seen[key] = (first, count + 1)
        return False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            # RFC 3339 with milliseconds and the zone, as log shippers parse it.
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(fmt: str | None = None, level: str | None = None) -> None:
    """Set up the ``spanvisor`` logger; the agent's own logging is left alone.

    Called again with explicit values (the CLI does, once the TOML file is
    read), it replaces its own handler.
    """
    logger = logging.getLogger("spanvisor")
    previous = getattr(logger, "_spanvisor_handler", None)
    if previous is not None:
        if fmt is None and level is None:
            return
        logger.removeHandler(previous)
    fmt = (fmt or os.environ.get("SPANVISOR_LOG_FORMAT") or "human").lower()
    level = (level or os.environ.get("SPANVISOR_LOG_LEVEL") or "info").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactingFilter())
    handler.addFilter(RepeatFilter())
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level, logging.INFO))
    logger.propagate = False
    logger._spanvisor_handler = handler  # type: ignore[attr-defined]
