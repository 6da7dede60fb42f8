"""Qwen Code (``service.name`` ``qwen-code``), a fork of Gemini CLI: records
named ``qwen-code.<event>`` in the ``event.name`` attribute, each with
``session.id``; sent as OTLP/JSON over HTTP (chunked, no Content-Length).

Its counts are Gemini CLI's: cached input inside ``input_token_count`` (as
GenAI counts it), thinking tokens apart from the output and billed as
output, so added to it. Qwen Code reports no cost (priced from tokens).
Its ``session.start`` and ``session.end`` records carry generic names that
other senders use too: they are not read (a name is a CLI's only when it
is unmistakably that CLI's).
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

CLI: Final = "Qwen Code"
SERVICES: Final = frozenset({"qwen-code"})
SESSION_KEYS: Final = ("session.id",)
PROVIDER: Final = "openai"  # its OpenAI-compatible API (the model names the vendor)
# Its SDK percent-decodes OTEL_RESOURCE_ATTRIBUTES, as the OTel specification asks.
DECODES_RESOURCE: Final = True


def _prompt(a: Mapping[str, Any]) -> Reading:
    return Reading("prompt", text=clean(a.get("prompt"), MAX_NAME))


def _call(a: Mapping[str, Any]) -> Reading:
    return Reading(
        "call",
        model=string(a, "model"),
        provider=None,
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
    "qwen-code.config": lambda a: LIFE,
    "qwen-code.auth": lambda a: LIFE,
    "qwen-code.user_prompt": _prompt,
    "qwen-code.api_request": lambda a: LIFE,
    "qwen-code.api_response": _call,
    "qwen-code.api_error": _error,
    "qwen-code.api_retry": lambda a: LIFE,
    "qwen-code.tool_call": _tool,
    "qwen-code.next_speaker_check": lambda a: LIFE,
    "qwen-code.chat_compression": lambda a: LIFE,
    "qwen-code.conversation_finished": lambda a: LIFE,
}
