"""Make agent-supplied values storable in PostgreSQL, saying what was changed.

PostgreSQL ``text`` and ``jsonb`` reject NUL characters and lone surrogates
(what invalid UTF-8 becomes once decoded with ``surrogateescape``), ``jsonb``
rejects NaN and infinities, and a megabyte message has no place in an audit
row. Each fix is recorded as a note (``"message: 3 NUL characters removed"``)
that lands in the row's ``notes`` column, so the audit shows that the stored
value differs from what the agent sent. :func:`quarantine` stores what
PostgreSQL still refused, as escaped JSON text.
"""

from __future__ import annotations

import json
import math
import re
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

# Column limits in characters; everything else that is free text gets TEXT_LIMIT.
ID_LIMIT = 512
TEXT_LIMIT = 8_192
LONG_TEXT_LIMIT = 65_536
TRUNCATION_MARK = "…[truncated]"

_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str | None, field: str, notes: list[str], limit: int = TEXT_LIMIT) -> str | None:
    """``value`` without NULs or lone surrogates, at most ``limit`` characters."""
    if value is None:
        return None
    # The usual case, checked in C: isascii is O(1) on CPython's compact strings.
    if value.__class__ is str and len(value) <= limit and value.isascii() and "\x00" not in value:
        return value
    if not isinstance(value, str):
        notes.append(f"{field}: {type(value).__name__} converted to text")
        value = str(value)
    if "\x00" in value:
        notes.append(f"{field}: {value.count(chr(0))} NUL characters removed")
        value = value.replace("\x00", "")
    if not value.isascii():
        value, n = _SURROGATES.subn("\ufffd", value)
        if n:
            notes.append(f"{field}: {n} invalid UTF-8 sequences (lone surrogates) replaced with U+FFFD")
    if len(value) > limit:
        notes.append(f"{field}: truncated from {len(value)} to {limit} characters")
        value = value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return value


def clean_json(value: Any, field: str, notes: list[str], depth: int = 0) -> Any:
    """A copy of ``value`` that ``jsonb`` accepts: clean strings, finite numbers, bounded depth."""
    if isinstance(value, str):
        return clean_text(value, field, notes)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes.append(f"{field}: {value} is not valid JSON, stored as null")
        return None
    if depth >= 16:
        notes.append(f"{field}: nested deeper than 16 levels, stored as text")
        return clean_text(repr(value), field, notes)
    if isinstance(value, dict):
        return {
            clean_text(str(k), f"{field} key", notes, ID_LIMIT): clean_json(v, f"{field}.{k}", notes, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean_json(v, f"{field}[]", notes, depth + 1) for v in value]
    notes.append(f"{field}: {type(value).__name__} stored as text")
    return clean_text(repr(value), field, notes)


# Built once: json.dumps with options builds a new encoder on every call.
_encode_utf8 = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _no_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The fast path's encoder: the C encoder JSONEncoder.encode would build for
# the same options on every call (one an event: about 1.2 µs saved), without
# the circular-reference markers: a value that nests too deep or refers to
# itself raises RecursionError instead, and takes the slow path as any value
# the encoder refuses does.
_c_encode_ascii = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _no_default, encode_basestring_ascii, None, ":", ",", False, False, False)
)


def dumps(value: Any) -> str:
    """JSON text for a jsonb parameter; ``value`` must have been through :func:`clean_json`."""
    return _encode_utf8(value)


# In ensure_ascii output, what jsonb would refuse shows as an escape: \u0000 or a surrogate.
_BAD_ESCAPE = re.compile(r"\\u(?:0000|d[89a-f][0-9a-f]{2})", re.IGNORECASE)


def json_text(value: Any, field: str, notes: list[str]) -> str:
    """:func:`dumps` of :func:`clean_json`, with a fast path for the usual clean value.

    One C-accelerated encode and one scan decide that nothing needs fixing;
    only suspicious values take the slow, note-taking walk.
    """
    if not value:
        return "[]" if isinstance(value, list | tuple) else "{}" if isinstance(value, dict) else dumps(value)
    try:
        text = "".join(_c_encode_ascii(value, 0)) if _c_encode_ascii is not None else _encode_ascii(value)
    except (ValueError, TypeError, RecursionError):
        text = ""
    if text and len(text) <= TEXT_LIMIT and ("\\u" not in text or not _BAD_ESCAPE.search(text)):
        return text
    return dumps(clean_json(value, field, notes))


async def quarantine(conn: Any, event_id: str | None, task_id: str | None, reason: str, payload: Any) -> None:
    # ensure_ascii: NULs and surrogates become escapes, so any payload fits in text.
    text = json.dumps(payload, ensure_ascii=True, default=repr)
    await conn.execute(
        "INSERT INTO quarantine (event_id, task_id, reason, payload) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (event_id) DO NOTHING",
        _safe(event_id),
        _safe(task_id),
        _safe(reason),
        text,
    )


def _safe(s: str | None) -> str | None:
    if s is None:
        return None
    return s.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:4096]
