"""A JSON request body, read whole, bounded in size and in nesting.

Python's ``json`` recurses once per level: ``[[[[…]]]]`` a few thousand deep
raises ``RecursionError`` (a 500 with a traceback, before this), and a body
just shallow enough to parse can still exhaust the stack in the code that
walks it next (canonical JSON, the permit check). So the nesting is counted
on the bytes first, in one pass over the brackets outside strings, and a
body deeper than :data:`MAX_DEPTH` is refused without parsing it. Nothing
spanvisor reads nests that deep: an action's arguments stop at 16 levels
(:data:`spanvisor.canonical.MAX_DEPTH`).

:func:`read_json` answers :class:`GoodJson` or :class:`BadJson` (the 400's
message), never raises for what a client sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MAX_DEPTH = 64
# A JSON string, escapes included (possessive: linear on any input).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass(frozen=True, slots=True)
class GoodJson:
    value: Any


@dataclass(frozen=True, slots=True)
class BadJson:
    """Why the body is refused: the 400's message."""

    message: str


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``raw`` nests arrays and objects deeper than ``limit``."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case: not even that many brackets
    depth = 0
    for b in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if b in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(0, depth - 1)
    return False


def parse(raw: bytes, empty: bytes = b"null") -> GoodJson | BadJson:
    """``raw`` as JSON (``empty`` stands for an empty body)."""
    if too_deep(raw):
        return BadJson(f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        return GoodJson(json.loads(raw or empty))
    except RecursionError:  # the count above makes this unreachable; kept as a floor
        return BadJson(f"the body nests deeper than {MAX_DEPTH} levels")
    except ValueError as exc:  # UnicodeDecodeError too
        return BadJson(f"the body is not JSON: {exc}")


async def read_json(request: web.BaseRequest, max_bytes: int, empty: bytes = b"null") -> GoodJson | BadJson:
    """The request's body as JSON, at most ``max_bytes`` of it."""
    if request.content_length is not None and request.content_length > max_bytes:
        return BadJson(f"the body is larger than {max_bytes} bytes")
    raw = bytearray()
    # read(n) returns what has arrived so far, up to n: read to the end.
    while len(raw) <= max_bytes:
        chunk = await request.content.read(max_bytes + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > max_bytes:
        return BadJson(f"the body is larger than {max_bytes} bytes")
    return parse(bytes(raw), empty)


__all__ = ["MAX_DEPTH", "BadJson", "GoodJson", "parse", "read_json", "too_deep"]
