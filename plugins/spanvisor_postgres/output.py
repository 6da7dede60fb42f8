"""What the audit commands print: tables that fit the terminal, and a quiet
exit when the reader of a pipe goes away (``spanvisor tasks --json | head -1``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

ELLIPSIS = "…"
# A column is never cut below this many characters ("ab…").
MIN_COLUMN = 3
GAP = "  "


class ReaderGone(Exception):
    """stdout is a pipe whose reader has closed it: stop, it is not an error."""


def say(text: str) -> None:
    try:
        print(text)
    except BrokenPipeError:
        raise ReaderGone from None


def flush() -> None:
    """Flush now, while a closed pipe can still be told apart from a real failure."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise ReaderGone from None


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's own flush at exit is quiet too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def terminal_width() -> int | None:
    """``COLUMNS`` when set, the terminal's width when stdout is one, else None (a
    pipe or a file gets whole rows, for grep and friends)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if sys.stdout.isatty():
            return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        pass
    return None


def fit(widths: list[int], floors: list[int], limit: int) -> list[int]:
    """Narrow the widest columns, one character at a time, until the row fits
    ``limit`` or every column is at its floor."""
    widths = list(widths)
    total = sum(widths) + len(GAP) * (len(widths) - 1)
    while total > limit:
        cuttable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] -= 1
        total -= 1
    return widths


def clip(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: max(0, width - 1)] + ELLIPSIS


def table(
    rows: Sequence[Sequence[str]], header: Sequence[str], right: Sequence[int] = (), width: int | None = None
) -> str:
    """Aligned columns under a rule; with ``width``, the widest columns are cut
    (ending in "…") until each line fits it."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    if width is not None:
        floors = [min(w, MIN_COLUMN) for w in widths]
        widths = fit(widths, floors, width)

    def line(cells: Sequence[str]) -> str:
        parts = [clip(c, w) for c, w in zip(cells, widths, strict=True)]
        return GAP.join(
            p.rjust(w) if i in right else p.ljust(w) for i, (p, w) in enumerate(zip(parts, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), GAP.join("─" * w for w in widths), *(line(r) for r in rows)])


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def print_json(value: Any) -> None:
    """One JSON object per line (dates in ISO 8601)."""
    say(json.dumps(value, default=_json_default, ensure_ascii=False, indent=None))
