"""Turning agent-controlled attribute values into safe, bounded values.

Spans come from code we don't control: strings where numbers belong, NaN,
negative or absurd token counts, megabyte strings, bytes that are not UTF-8.
Each reader returns a clean value or ``None`` and appends the reason to
``notes`` whenever it had to change something, so the change is recorded on
the event rather than silently applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

MAX_TEXT = 4_000  # a Slack section shows 3,000; the audit keeps a little more
MAX_NAME = 256
MAX_URL = 2_048  # a web address (Slack takes links of at most this many characters)
MAX_TOKENS = 100_000_000  # no model window is near this; larger is a bug upstream
MAX_LIST = 100
MAX_NOTES = 20


def note(notes: list[str], key: str, msg: str) -> None:
    if len(notes) < MAX_NOTES:
        notes.append(f"{key}: {msg}")


def text(v: Any, key: str, notes: list[str], limit: int = MAX_TEXT) -> str | None:
    if v.__class__ is str and len(v) <= limit and v.isascii() and "\x00" not in v:
        # The usual value, clean already (an ASCII str has no lone surrogate):
        # nothing below would change it. isascii() is O(1) on CPython.
        return v or None
    if v is None:
        return None
    if isinstance(v, bytes):
        s = v.decode("utf-8", "replace")
        note(notes, key, "bytes decoded as UTF-8")
    elif isinstance(v, str):
        s = v
    elif isinstance(v, Sequence):
        s = ", ".join(str(x) for x in v)
    else:
        s = str(v)
    # Lone surrogates cannot be encoded anywhere downstream; NUL is rejected
    # by PostgreSQL text. Replace both here, once.
    if "\x00" in s:
        s = s.replace("\x00", "")
        note(notes, key, "NUL characters removed")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
        note(notes, key, "invalid UTF-8 replaced")
    if len(s) > limit:
        note(notes, key, f"truncated from {len(s):,} to {limit:,} characters")
        s = s[: limit - 1] + "…"
    return s or None


def name(v: Any, key: str, notes: list[str]) -> str | None:
    return text(v, key, notes, MAX_NAME)


def number(v: Any, key: str, notes: list[str]) -> float | None:
    if v is None or isinstance(v, bool):
        if isinstance(v, bool):
            note(notes, key, f"ignored boolean {v}")
        return None
    try:
        f = float(v) if isinstance(v, int | float) else float(str(v).strip().rstrip("%"))
    except OverflowError:  # an int beyond float range
        f = math.inf if v > 0 else -math.inf
    except ValueError:
        note(notes, key, f"ignored non-number {str(v)[:40]!r}")
        return None
    if not math.isfinite(f):
        note(notes, key, f"ignored {f}")
        return None
    return f


def progress(v: Any, notes: list[str], key: str = "agent.progress") -> float | None:
    f = number(v, key, notes)
    if f is None:
        return None
    if f < 0 or f > 100:
        clamped = min(100.0, max(0.0, f))
        note(notes, key, f"{f:g} clamped to {clamped:g}")
        return clamped
    return f


def tokens(v: Any, key: str, notes: list[str]) -> int | None:
    if v.__class__ is int and 0 <= v <= MAX_TOKENS:
        return v  # the usual count: what the checks below would return (not a bool: its class is bool)
    f = number(v, key, notes)
    if f is None:
        return None
    if f < 0:
        note(notes, key, f"negative {f:g} ignored")
        return None
    if f > MAX_TOKENS:
        note(notes, key, f"{f:g} clamped to {MAX_TOKENS:,}")
        return MAX_TOKENS
    return int(f)


_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


def flag(v: Any, key: str, notes: list[str]) -> bool | None:
    """A yes/no: a bool, 0 or 1, or ``true``/``false`` (``yes``/``no``, ``on``/``off``) as a string."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    word = v.strip().lower() if isinstance(v, str) else None
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    note(notes, key, f"ignored {str(v)[:40]!r}: not true or false")
    return None


def string_list(v: Any, key: str, notes: list[str]) -> tuple[str, ...]:
    """A list of short strings from a sequence attribute, JSON, or commas."""
    if v is None:
        return ()
    items: Sequence[Any]
    if isinstance(v, str):
        stripped = v.strip()
        if stripped.startswith("["):
            try:
                loaded = json.loads(stripped)
                items = loaded if isinstance(loaded, list) else [loaded]
            except (ValueError, RecursionError):  # deeply nested JSON is agent input too
                items = stripped.split(",")
        else:
            items = stripped.split(",") if stripped else []
    elif isinstance(v, Sequence) and not isinstance(v, bytes):
        items = v
    else:
        items = [v]
    if len(items) > MAX_LIST:
        note(notes, key, f"kept the first {MAX_LIST} of {len(items)} items")
        items = items[:MAX_LIST]
    out = []
    for x in items:
        s = name(x, key, notes)
        if s and s.strip():
            out.append(s.strip())
    return tuple(out)


def jsonable(v: Any, key: str, notes: list[str]) -> Any:
    """An attribute value as JSON-safe data (for a checkpoint's extras)."""
    if v is None or isinstance(v, bool | int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, str | bytes):
        return text(v, key, notes)
    if isinstance(v, Sequence):
        return [jsonable(x, key, notes) for x in list(v)[:MAX_LIST]]
    return text(str(v), key, notes)
