"""Codex CLI (``service.name`` ``codex_exec`` or ``codex_tui``): records
named ``codex.<event>`` in ``event.name``, each with ``conversation.id``.

Token counts come on the ``codex.sse_event`` of kind ``response.completed``
(Codex sends two such records per call, the first without counts);
OpenAI counts cached input inside the input and reasoning inside the
output, as GenAI does. Codex reports no cost (priced from tokens).

Codex's log bridge (``opentelemetry-appender-tracing``) fills each record's
``event_name`` field with its tracing call site (``event
otel/src/events/session_telemetry.rs:703``), which changes with every
build; its own name stays in the ``event.name`` attribute
(:func:`event_name`).
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
    string,
    truth,
)

CLI: Final = "Codex CLI"
SERVICES: Final = frozenset({"codex_exec", "codex_tui", "codex_cli_rs", "codex-cli", "codex"})
SESSION_KEYS: Final = ("conversation.id", "session.id")
PROVIDER: Final = "openai"
# Its SDK (opentelemetry-rust) does not percent-decode OTEL_RESOURCE_ATTRIBUTES
# as the OTel specification asks: the receiver decodes what it reads of it.
DECODES_RESOURCE: Final = False
# How tracing names an event it was given no name for: "event <file>:<line>".
CALL_SITE_PREFIX: Final = "event "


def _prompt(a: Mapping[str, Any]) -> Reading:
    return Reading("prompt", text=clean(a.get("prompt"), MAX_NAME))


def _sse(a: Mapping[str, Any]) -> Reading:
    kind = a.get("event.kind")
    tokens_in = integer(a, "input_token_count")
    if kind != "response.completed" or tokens_in is None:
        return LIFE
    return Reading(
        "call",
        model=string(a, "model", "slug"),
        provider=PROVIDER,
        input_tokens=tokens_in,
        output_tokens=integer(a, "output_token_count"),
        cache_read=integer(a, "cached_token_count"),
        duration_ms=number(a, "duration_ms"),
    )


def _request(a: Mapping[str, Any]) -> Reading:
    status = integer(a, "http.response.status_code")
    err = clean(a.get("error.message"), 200)
    if err is None and (status is None or status < 400):
        return LIFE
    attempt = integer(a, "attempt")
    where = f" (HTTP {status}" + (f", attempt {attempt}" if attempt else "") + ")" if status else ""
    return Reading("warning", text=f"API error{where}: {err or 'request failed'}")


def _tool(a: Mapping[str, Any]) -> Reading:
    ok = truth(a, "success")
    return Reading(
        "tool",
        tool=string(a, "tool_name"),
        text=command(a.get("arguments")),
        duration_ms=number(a, "duration_ms"),
        failed=ok is False,
        error="the tool reported a failure" if ok is False else None,
    )


def _decision(a: Mapping[str, Any]) -> Reading:
    decision = str(a.get("decision", "")).lower()
    denied = decision in ("denied", "abort", "reject", "rejected")
    tool = clean(a.get("tool_name"), 60) or "a tool"
    source = clean(a.get("source"), 40)
    if source is not None and source.lower() == "user":
        # The person answered Codex's own prompt at its terminal (its
        # interactive UI; 0.169 says source "User"): said when it is made,
        # and the task works again (a PermissionRequest hook with
        # --at-terminal showed it waiting meanwhile).
        how = " (for the session)" if decision == "approved_for_session" else ""
        if denied:
            return Reading("warning", text=f"Denied at the terminal: {tool}", status="working")
        return Reading("answer", text=f"Allowed at the terminal{how}: {tool}", status="working")
    if not denied:
        return LIFE
    return Reading("warning", text=f"Denied: {tool}" + (f" (by {source})" if source else ""))


EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any]], Reading]]] = {
    "codex.conversation_starts": lambda a: LIFE,
    "codex.startup_phase": lambda a: LIFE,
    "codex.turn_ttft": lambda a: LIFE,
    "codex.user_prompt": _prompt,
    "codex.api_request": _request,
    "codex.sse_event": _sse,
    "codex.tool_result": _tool,
    "codex.tool_decision": _decision,
}


def event_name(rec: Any, name: str) -> str | None:
    """The Codex event a record named ``name`` (its ``event_name`` field) is,
    when that name is a tracing call site: its ``event.name`` attribute, if
    a Codex event this module reads; else None. The attributes are looked
    at only for a call-site name, so other senders' records cost nothing."""
    if not name.startswith(CALL_SITE_PREFIX):
        return None
    for kv in rec.attributes:
        if kv.key == "event.name":
            value = kv.value.string_value if kv.value.WhichOneof("value") == "string_value" else ""
            return value if value in EVENTS else None
    return None
