"""Claude Code (``service.name`` ``claude-code``): records named by their
body, ``claude_code.<event>`` (the ``event.name`` attribute holds the short
name), each with ``session.id``, ``prompt.id`` and ``event.sequence``.

Anthropic counts ``input_tokens`` without the cached ones; GenAI (and the
tracker) count cached input inside the input, so the three are added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from spanvisor.clis.records import (
    LIFE,
    MAX_NAME,
    Reading,
    clean,
    command,
    integer,
    number,
    step_name,
    string,
    total,
    truth,
)

CLI: Final = "Claude Code"
SERVICES: Final = frozenset({"claude-code"})
SESSION_KEYS: Final = ("session.id",)
PROVIDER: Final = "anthropic"
# Its SDK percent-decodes OTEL_RESOURCE_ATTRIBUTES, as the OTel specification asks.
DECODES_RESOURCE: Final = True


def _prompt(a: Mapping[str, Any]) -> Reading:
    return Reading("prompt", text=clean(a.get("prompt"), MAX_NAME))


def _call(a: Mapping[str, Any]) -> Reading:
    fresh = integer(a, "input_tokens")
    read = integer(a, "cache_read_tokens")
    write = integer(a, "cache_creation_tokens")
    return Reading(
        "call",
        model=string(a, "model"),
        provider=PROVIDER,
        input_tokens=total(fresh, read, write),
        output_tokens=integer(a, "output_tokens"),
        cache_read=read,
        cache_write=write,
        cost_usd=number(a, "cost_usd"),
        duration_ms=number(a, "duration_ms"),
    )


def _error(a: Mapping[str, Any]) -> Reading:
    status = a.get("status_code")
    attempt = integer(a, "attempt")
    err = clean(a.get("error"), 200) or "unknown error"
    where = f" (HTTP {status}" + (f", attempt {attempt}" if attempt else "") + ")" if status else ""
    return Reading("warning", text=f"API error{where}: {err}")


def _retries_exhausted(a: Mapping[str, Any]) -> Reading:
    err = clean(a.get("error"), 200) or "unknown error"
    return Reading("warning", text=f"API retries exhausted: {err}")


def _tool(a: Mapping[str, Any]) -> Reading:
    ok = truth(a, "success")
    return Reading(
        "tool",
        tool=string(a, "tool_name"),
        text=command(a.get("tool_input")) or command(a.get("tool_parameters")),
        duration_ms=number(a, "duration_ms"),
        failed=ok is False,
        error=clean(a.get("error"), 300) if ok is False else None,
    )


def _decision(a: Mapping[str, Any]) -> Reading:
    source = clean(a.get("source"), 40)
    rejected = str(a.get("decision", "")).lower() == "reject"
    if source is not None and source.startswith("user"):
        # The person answered Claude Code's own prompt at its terminal: the
        # task waited on them (the Notification hook said so) and works again.
        call = step_name(string(a, "tool_name"), command(a.get("tool_parameters")))
        how = _ANSWERS.get(source, "")
        if rejected:
            return Reading("warning", text=f"Denied at the terminal{how}: {call}", status="working")
        return Reading("answer", text=f"Allowed at the terminal{how}: {call}", status="working")
    if not rejected:
        return LIFE
    tool = clean(a.get("tool_name"), 60) or "a tool"
    return Reading("warning", text=f"Denied: {tool}" + (f" (by {source})" if source else ""))


# How Claude Code's user_* sources read (tool_decision).
_ANSWERS: Final = {
    "user_temporary": " (once)",
    "user_permanent": " (and from now on)",
    "user_abort": " (cancelled)",
}


EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any]], Reading]]] = {
    "claude_code.user_prompt": _prompt,
    "claude_code.api_request": _call,
    "claude_code.api_error": _error,
    "claude_code.api_retries_exhausted": _retries_exhausted,
    "claude_code.tool_result": _tool,
    "claude_code.tool_decision": _decision,
    "claude_code.hook_execution_start": lambda a: LIFE,
    "claude_code.hook_execution_complete": lambda a: LIFE,
}
# The short names of the event.name attribute: the body says which CLI.
SHORT_NAMES: Final = frozenset(n.removeprefix("claude_code.") for n in EVENTS)


def event_name(rec: Any, name: str) -> str | None:
    """The event a record named ``name`` is, when ``name`` is one of its
    short names: its full name is its body."""
    if name not in SHORT_NAMES:
        return None
    kind = rec.body.WhichOneof("value")
    body = rec.body.string_value if kind == "string_value" else None
    return body if body in EVENTS else None
