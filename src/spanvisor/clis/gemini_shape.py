"""The readers of Gemini CLI's records, which Qwen Code (a fork of it)
sends too under its own event names: a prompt, a model call, an API error
and a tool call. Each CLI's module maps its names to them.

Gemini counts cached content inside the prompt tokens (as GenAI does) and
its thinking tokens apart from the output: they are billed as output, so
they are added to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spanvisor.clis.records import (
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


def prompt(a: Mapping[str, Any]) -> Reading:
    return Reading("prompt", text=clean(a.get("prompt"), MAX_NAME))


def call_by(provider: str | None) -> Callable[[Mapping[str, Any]], Reading]:
    """The model-call reader of a CLI whose calls go to ``provider`` (None:
    the model names the vendor)."""

    def call(a: Mapping[str, Any]) -> Reading:
        return _call(a, provider)

    return call


def _call(a: Mapping[str, Any], provider: str | None) -> Reading:
    return Reading(
        "call",
        model=string(a, "model"),
        provider=provider,
        input_tokens=integer(a, "input_token_count"),
        output_tokens=total(integer(a, "output_token_count"), integer(a, "thoughts_token_count")),
        cache_read=integer(a, "cached_content_token_count"),
        duration_ms=number(a, "duration_ms"),
    )


def error(a: Mapping[str, Any]) -> Reading:
    status = a.get("status_code")
    err = clean(a.get("error"), 200) or clean(a.get("error_type"), 80) or "unknown error"
    return Reading("warning", text="API error" + (f" (HTTP {status})" if status else "") + f": {err}")


def tool(a: Mapping[str, Any]) -> Reading:
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


__all__ = ["call_by", "error", "prompt", "tool"]
