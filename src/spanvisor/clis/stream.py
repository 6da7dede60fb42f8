"""What a CLI that sends no telemetry spanvisor reads prints, as the
launcher reports it: each adapter's ``stream`` module reads one JSON line
of its output at a time (``read(report, doc)``) and says its model calls,
tool calls, warnings and signs of life through a :class:`Report`, which
the launcher sends as records (:mod:`spanvisor.launcher.stream`); its
``model(argv, env, cwd)`` says which model the session uses, as far as the
command or the CLI's settings say (no line of its output does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

MAX_INPUT_CHARS = 4_000


class Report(Protocol):
    """Where a stream reader says what a line meant (the launcher's)."""

    # The CLI's session, once a line named it: nothing is said before.
    session: str | None
    # What a reader keeps between lines (a running cost, tool inputs by call).
    notes: dict[str, Any]
    # The CLI's command as the launcher started it.
    argv: Sequence[str]

    def say(self, event: str, attrs: dict[str, Any], at: int) -> None:
        """One record: ``event`` (model_call, tool_call, warning, life) at ``at`` (ns)."""

    def call(
        self,
        at: int,
        fresh: int,
        read: int,
        write: int,
        output: int,
        cost: float | None,
        ms: Any,
        model: str | None = None,
    ) -> None:
        """A model call: its fresh, cache-read and cache-write input tokens,
        output tokens, dollars, duration, and the model when the line names
        it (else the session's, as its command or settings say)."""

    def tool_ran(self, at: int) -> None:
        """A tool call ran (the launcher checks the gate it gave the CLI had loaded)."""


def ns_of_ms(v: Any) -> int:
    return int(v * 1_000_000) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else time.time_ns()


def ns_of_iso(v: Any) -> int:
    if isinstance(v, str):
        try:
            return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1e9)
        except ValueError:
            pass
    return time.time_ns()


def num(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 else 0


def tool_input(v: Any) -> str:
    """A tool call's input as its step shows it: compact JSON, its middle cut when long."""
    try:
        text = json.dumps(v, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = str(v)
    return (
        text if len(text) <= MAX_INPUT_CHARS else text[: MAX_INPUT_CHARS // 2] + " … " + text[-MAX_INPUT_CHARS // 2 :]
    )


def read_json(path: Path) -> Any:
    """A settings file's JSON (None: missing, unreadable, over a MiB)."""
    try:
        if path.stat().st_size > 1024 * 1024:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


__all__ = ["MAX_INPUT_CHARS", "Report", "ns_of_iso", "ns_of_ms", "num", "read_json", "tool_input"]
