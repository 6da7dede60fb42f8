"""What one CLI record says, in one shape for the three CLIs.

Each CLI module maps its exact event names to a reader that turns the
record's attributes into a :class:`Reading`. Readers never raise on what a
CLI version sends: a missing or renamed attribute reads as ``None`` (the
record is still a sign of life), a value of the wrong type likewise.
Prompts and tool inputs are clipped and redacted here, before anything else
sees them, and never logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spanvisor.redaction import clip_middle, redact

Kind = Literal["prompt", "call", "tool", "warning", "answer", "life"]

# A task name and a tool's command are short lines: a Slack header, a step.
MAX_NAME = 80
MAX_COMMAND = 120
# Values the CLIs send in place of content they were told not to log.
_WITHHELD = frozenset({"<redacted>", "[redacted]", "redacted"})


@dataclass(frozen=True, slots=True)
class Reading:
    kind: Kind
    text: str | None = None  # prompt (clipped, redacted), warning message, tool command
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None  # including cached input, as GenAI counts it
    output_tokens: int | None = None  # including reasoning tokens
    cache_read: int | None = None
    cache_write: int | None = None
    cost_usd: float | None = None
    duration_ms: float | None = None
    tool: str | None = None
    failed: bool = False
    error: str | None = None
    # The task's status once this record is read (a person answered at the
    # terminal: the session works again), else None (it says nothing of it).
    status: str | None = None


LIFE = Reading("life")


def clean(value: Any, limit: int, *, middle: bool = False) -> str | None:
    """One line of at most ``limit`` characters, secrets redacted; None for
    nothing or for a placeholder the CLI sends instead of withheld content.
    ``middle``: a long value keeps its start and its end (a command's tail
    is what it does), else its start."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    if middle and len(s) > limit * 32:
        s = f"{_head(s, limit * 16)} {_tail(s, limit * 16)}"
    elif not middle:
        s = _head(" ".join(s[: limit * 64].split()), limit * 4)
    s = " ".join(s.split())
    if not s or s.lower() in _WITHHELD:
        return None
    # Redacted whole, then clipped: a secret cut in two would show its half.
    s = redact(s)
    if middle:
        return clip_middle(s, limit)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _head(s: str, n: int) -> str:
    """At most ``n`` characters of ``s``'s start, less a word cut at the end
    (half a secret is not what redaction knows to hide; one word alone is
    kept cut)."""
    if len(s) <= n:
        return s
    cut = s[:n]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def _tail(s: str, n: int) -> str:
    """The same of its end."""
    if len(s) <= n:
        return s
    cut = s[-n:]
    return cut[cut.find(" ") + 1 :] if " " in cut else cut


def integer(attrs: Mapping[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` that reads as a non-negative whole number."""
    for k in keys:
        v = attrs.get(k)
        if isinstance(v, bool) or v is None:
            continue
        try:
            n = int(float(v)) if isinstance(v, (str, float)) else int(v)
        except (TypeError, ValueError, OverflowError):
            continue
        if n >= 0:
            return n
    return None


def number(attrs: Mapping[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = attrs.get(k)
        if isinstance(v, bool) or v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            continue
        if 0 <= f < 1e12:  # not NaN (every comparison with NaN is false), not negative, not absurd
            return f
    return None


def string(attrs: Mapping[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = attrs.get(k)
        if isinstance(v, str) and v:
            return v
    return None


def truth(attrs: Mapping[str, Any], key: str) -> bool | None:
    v = attrs.get(key)
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def total(*parts: int | None) -> int | None:
    present = [p for p in parts if p is not None]
    return sum(present) if present else None


# The argument that says what a tool call does, by the names the CLIs' tools use.
_COMMAND_KEYS = (
    "command",
    "full_command",
    "bash_command",
    "cmd",
    "file_path",
    "path",
    "absolute_path",
    "pattern",
    "url",
    "query",
)


def command(raw: Any) -> str | None:
    """The gist of a tool's input (its command, file or pattern), clipped
    and redacted: from a JSON object (as the CLIs send it) or a string."""
    value: Any = raw
    if isinstance(raw, str) and raw[:1] in "{[":
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
    if isinstance(value, dict):
        for k in _COMMAND_KEYS:
            v = value.get(k)
            if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
                # Codex: ["bash", "-lc", "ls -la"]: the script is what was run.
                return clean(v[-1] if len(v) == 3 and v[1] in ("-c", "-lc") else " ".join(v), MAX_COMMAND, middle=True)
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                return clean(v, MAX_COMMAND, middle=True)
        return None
    if isinstance(value, str):
        return clean(value, MAX_COMMAND, middle=True)
    return None


def step_name(tool: str | None, cmd: str | None) -> str:
    """How a tool call reads as a step: ``Bash(git status)``, as Claude
    Code writes permission rules."""
    name = clean(tool, 60) or "tool"
    return f"{name}({cmd})" if cmd else name


__all__ = ["LIFE", "Reading", "clean", "command", "integer", "number", "step_name", "string", "total", "truth"]
