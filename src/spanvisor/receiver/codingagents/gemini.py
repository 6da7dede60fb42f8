"""Gemini CLI (``service.name`` ``gemini-cli``): records named
``gemini_cli.<event>`` in ``event.name``, each with ``session.id``; sent
as OTLP/JSON over HTTP.

Gemini counts cached content inside the prompt tokens (as GenAI does) and
its thinking tokens apart from the output: they are billed as output, so
they are added to it. Gemini CLI reports no cost (priced from tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from spanvisor.receiver.codingagents.reading import (
    LIFE,
    MAX_NAME,
    Reading,
    clean,
    command,
    integer,
    number,
    string,
    total,
    truth,
)

CLI: Final = "Gemini CLI"
SERVICES: Final = frozenset({"gemini-cli"})
SESSION_KEYS: Final = ("session.id",)
PROVIDER: Final = "google"
# Its SDK percent-decodes OTEL_RESOURCE_ATTRIBUTES, as the OTel specification asks.
DECODES_RESOURCE: Final = True


def _prompt(a: Mapping[str, Any]) -> Reading:
    return Reading("prompt", text=clean(a.get("prompt"), MAX_NAME))


def _call(a: Mapping[str, Any]) -> Reading:
    return Reading(
        "call",
        model=string(a, "model"),
        provider=PROVIDER,
        input_tokens=integer(a, "input_token_count"),
        output_tokens=total(integer(a, "output_token_count"), integer(a, "thoughts_token_count")),
        cache_read=integer(a, "cached_content_token_count"),
        duration_ms=number(a, "duration_ms"),
    )


def _error(a: Mapping[str, Any]) -> Reading:
    status = a.get("status_code")
    err = clean(a.get("error"), 200) or clean(a.get("error_type"), 80) or "unknown error"
    return Reading("warning", text="API error" + (f" (HTTP {status})" if status else "") + f": {err}")


def _tool(a: Mapping[str, Any]) -> Reading:
    decision = str(a.get("decision", "")).lower()
    tool = string(a, "function_name")
    if decision == "reject":
        return Reading("warning", text=f"Denied: {clean(tool, 60) or 'a tool'}")
    ok = truth(a, "success")
    return Reading(
        "tool",
        tool=tool,
        text=command(a.get("function_args")),
        duration_ms=number(a, "duration_ms"),
        failed=ok is False,
        error=(clean(a.get("error"), 300) or "the tool reported a failure") if ok is False else None,
    )


EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any]], Reading]]] = {
    "gemini_cli.config": lambda a: LIFE,
    "gemini_cli.user_prompt": _prompt,
    "gemini_cli.api_request": lambda a: LIFE,
    "gemini_cli.api_response": _call,
    "gemini_cli.api_error": _error,
    "gemini_cli.tool_call": _tool,
    "gemini_cli.hook_call": lambda a: LIFE,
    "gemini_cli.model_routing": lambda a: LIFE,
    "gemini_cli.next_speaker_check": lambda a: LIFE,
    "gemini_cli.flash_fallback": lambda a: LIFE,
}
