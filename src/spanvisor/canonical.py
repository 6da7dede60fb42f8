"""Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) and the
digest of an approval request built on it.

A person approves *what they were shown*: the request's agent, task, run,
approval id, question, options, details and action (a tool name and its
arguments). The digest is a SHA-256 of the canonical JSON of all of it, so
the agent that is about to run an action, the server that recorded the
decision and any other language can compute the same digest from the same
facts: keys sorted by UTF-16 code units, numbers written as ECMAScript
writes them, no whitespace, strings escaped only where JSON must.

Numbers are IEEE doubles in JCS: a float that is not finite is refused, and
so is an integer beyond 2**53 (it would not come back as the same integer).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

# The largest integer every JSON reader holds exactly (a double's mantissa).
MAX_SAFE_INT = 2**53
# Bounds of an action: its tool's name, its canonical size and nesting. A
# large Write is an action too: up to a megabyte opens a request a person
# sees (clipped, the whole a click away) and decides; beyond, it is refused
# with the reason. What a person is shown of it is in spanvisor.display.
MAX_TOOL = 128
MAX_ACTION_BYTES = 1024 * 1024
MAX_DEPTH = 16
MAX_DETAILS = 2000
# Most people one request may require (a typo of 20 must not lock it for ever).
MAX_APPROVERS = 5
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class NotCanonical(ValueError):
    """A value JCS cannot write (NaN, infinity, a huge integer, a lone
    surrogate, a non-string key, a type JSON does not have)."""


def canonical_json(value: Any) -> str:
    """The RFC 8785 canonical form of ``value`` (dicts, lists/tuples, str,
    int, float, bool, None)."""
    out: list[str] = []
    _write(value, out, 0)
    return "".join(out)


def _write(v: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH * 4:
        raise NotCanonical("nested too deeply")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, str):
        out.append(_string(v))
    elif isinstance(v, int):
        if abs(v) > MAX_SAFE_INT:
            raise NotCanonical(f"the integer {v} is beyond 2**53: send it as a string")
        out.append(str(v))
    elif isinstance(v, float):
        out.append(es_number(v))
    elif isinstance(v, Mapping):
        keys = list(v)
        if not all(isinstance(k, str) for k in keys):
            raise NotCanonical("object keys must be strings")
        keys.sort(key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for i, k in enumerate(keys):
            if i:
                out.append(",")
            out.append(_string(k))
            out.append(":")
            _write(v[k], out, depth + 1)
        out.append("}")
    elif isinstance(v, Sequence) and not isinstance(v, bytes | bytearray):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _write(x, out, depth + 1)
        out.append("]")
    else:
        raise NotCanonical(f"{type(v).__name__} is not a JSON value")


def _string(s: str) -> str:
    parts = ['"']
    for c in s:
        o = ord(c)
        if c in _SHORT:
            parts.append(_SHORT[c])
        elif o < 0x20:
            parts.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            raise NotCanonical("a string holds a lone surrogate")
        else:
            parts.append(c)
    parts.append('"')
    return "".join(parts)


def es_number(x: float) -> str:
    """``x`` as ECMAScript's Number.prototype.toString writes it."""
    if not math.isfinite(x):
        raise NotCanonical(f"{x} is not a finite number")
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    # repr is the shortest string that reads back as x: its digits are ES's.
    t = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, t.digits)).rstrip("0") or "0"
    assert isinstance(t.exponent, int)
    # x = 0.d1d2...dk * 10**n
    n = len(t.digits) + t.exponent
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mant = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def check_action(value: Any) -> dict[str, Any]:
    """An action as a request carries it: ``{"tool": name, "arguments":
    {...}}`` (arguments default to ``{}``), nothing else, canonical JSON at
    most MAX_ACTION_BYTES. Raises :class:`NotCanonical` with the reason."""
    if not isinstance(value, Mapping):
        raise NotCanonical("an action must be a JSON object with a tool and its arguments")
    extra = set(value) - {"tool", "arguments"}
    if extra:
        raise NotCanonical(f"an action holds only tool and arguments, not {', '.join(sorted(map(str, extra)))}")
    tool = value.get("tool")
    if not isinstance(tool, str) or not tool.strip():
        raise NotCanonical("an action's tool must be a non-empty string")
    if len(tool) > MAX_TOOL or any(ord(c) < 32 or ord(c) == 127 for c in tool):
        raise NotCanonical(f"an action's tool must be at most {MAX_TOOL} printable characters")
    args = value.get("arguments", {})
    if not isinstance(args, Mapping):
        raise NotCanonical("an action's arguments must be a JSON object")
    action = {"tool": tool, "arguments": dict(args)}
    _depth(args, 1)
    size = len(canonical_json(action).encode("utf-8"))
    if size > MAX_ACTION_BYTES:
        raise NotCanonical(
            f"the action is {size:,} bytes as canonical JSON, over the {MAX_ACTION_BYTES:,} a request may carry"
        )
    return action


def _depth(v: Any, d: int) -> None:
    if d > MAX_DEPTH:
        raise NotCanonical(f"an action's arguments nest deeper than {MAX_DEPTH}")
    if isinstance(v, Mapping):
        for x in v.values():
            _depth(x, d + 1)
    elif isinstance(v, list | tuple):
        for x in v:
            _depth(x, d + 1)


def approval_digest(
    *,
    agent: str,
    task: str,
    run: str,
    approval_id: str,
    question: str,
    options: Sequence[str],
    details: str | None = None,
    action: Mapping[str, Any] | None = None,
) -> str:
    """SHA-256 (hex) of the canonical JSON of everything a request shows."""
    doc = {
        "v": "spanvisor.approval/2",
        "agent": agent,
        "task": task,
        "run": run,
        "approval_id": approval_id,
        "question": question,
        "options": list(options),
        "details": details,
        "action": dict(action) if action is not None else None,
    }
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def clamp_approvers(n: Any, notes: list[str]) -> int:
    """``agent.approval.approvers_required`` as a count of people, 1..MAX."""
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n):
        notes.append(f"agent.approval.approvers_required: {n!r} is not a number; 1")
        return 1
    got = min(max(int(n), 1), MAX_APPROVERS)
    if got != n:
        notes.append(f"agent.approval.approvers_required: {n} clamped to {got}")
    return got


# Most entries of a request's approvers_from, and the longest one.
MAX_FROM = 20
MAX_FROM_ENTRY = 128


def check_from(raw: Any) -> tuple[str, ...]:
    """``agent.approval.approvers_from`` as entries ``group:NAME`` or a
    person's name; ValueError says why not (a request with a bad list is
    refused whole: dropping an entry could leave an empty list, anyone's)."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not items or len(items) > MAX_FROM:
        raise ValueError(f"a list of 1 to {MAX_FROM} entries (group:NAME or a person's name)")
    out: list[str] = []
    for x in items:
        text = x.strip() if isinstance(x, str) else ""
        name = text[6:].strip() if text.startswith("group:") else text
        if not name or len(text) > MAX_FROM_ENTRY or not text.isprintable():
            raise ValueError(f"{x!r} is not group:NAME or a person's name (printable, at most {MAX_FROM_ENTRY})")
        out.append(f"group:{name}" if text.startswith("group:") else name)
    return tuple(dict.fromkeys(out))


__all__ = [
    "MAX_ACTION_BYTES",
    "MAX_APPROVERS",
    "MAX_DETAILS",
    "MAX_FROM",
    "NotCanonical",
    "approval_digest",
    "canonical_json",
    "check_action",
    "check_from",
    "clamp_approvers",
    "es_number",
]
