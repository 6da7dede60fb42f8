"""GitHub Copilot CLI (``service.name`` ``github-copilot``): no log records,
only OTel GenAI spans, each with ``gen_ai.conversation.id`` (the
``sessionId`` its hooks read): ``invoke_agent`` (one per prompt: its
``gen_ai.input.messages`` holds the prompt when content capture is on),
``chat <model>`` (a model call: tokens, cached input inside the input;
``error.type`` when it failed), ``execute_tool <tool>`` (the command in
``github.copilot.tool.parameters.command`` when tool arguments are
captured; ``error.type`` ``denied`` when a hook or rule refused it) and
``permission``. Read span by span (:mod:`.fromspans`), as if each were a
record, so a session is one task as for the CLIs that send records.

Copilot CLI 1.0 exports every span when it exits (its batch processor
waits for the process's end whatever ``OTEL_BSP_SCHEDULE_DELAY`` says):
without the launcher or a hook the task appears then, whole. Its
``github.copilot.cost`` is not dollars (0 with your own model key,
premium requests otherwise): calls are priced from the tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from spanvisor.clis.records import LIFE, MAX_NAME, Reading, clean, command, integer, number, string

CLI: Final = "Copilot CLI"
SERVICES: Final = frozenset({"github-copilot"})
SESSION_KEYS: Final = ("gen_ai.conversation.id",)
# Its SDK percent-decodes OTEL_RESOURCE_ATTRIBUTES, as the OTel specification asks.
DECODES_RESOURCE: Final = True
# Its sessions are read from its spans (receiver.codingagents.fromspans), not from log records.
FROM_SPANS: Final = True
OPERATION: Final = "gen_ai.operation.name"
# A span's duration, which the spans give and the readers read as a record's.
DURATION_KEY: Final = "spanvisor.span.duration_ms"
# A span's status message, when it failed.
STATUS_KEY: Final = "spanvisor.span.status"
# The events heard when their span started, not when it ended: a prompt is
# given at its span's start (the span ends last, with the session's turn).
AT_START: Final = frozenset({"copilot.invoke_agent"})
# What Copilot CLI puts before the prompt it sends the model.
_DATETIME = re.compile(r"^\s*<current_datetime>[^<]{0,80}</current_datetime>\s*")
MAX_MESSAGES = 64 * 1024


def _first_user_text(raw: Any) -> str | None:
    if not isinstance(raw, str) or len(raw) > MAX_MESSAGES:
        return None
    try:
        messages = json.loads(raw)
    except ValueError:
        return None
    for m in messages if isinstance(messages, list) else []:
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        for p in m.get("parts") or ():
            text = p.get("content") if isinstance(p, dict) and p.get("type") == "text" else None
            if isinstance(text, str) and text.strip():
                return _DATETIME.sub("", text, count=1)
    return None


def _agent(a: Mapping[str, Any]) -> Reading:
    return Reading("prompt", text=clean(_first_user_text(a.get("gen_ai.input.messages")), MAX_NAME))


def _failure(a: Mapping[str, Any]) -> str | None:
    err = a.get("error.type")
    if err is None:
        return None
    return clean(a.get(STATUS_KEY), 200) or clean(err, 80) or "failed"


def _chat(a: Mapping[str, Any]) -> Reading:
    failed = _failure(a)
    if failed is not None:
        return Reading("warning", text=f"API error: {failed}")
    return Reading(
        "call",
        model=string(a, "gen_ai.response.model", "gen_ai.request.model"),
        # "github" is who served it, not whose prices apply: priced by the model.
        provider=None,
        input_tokens=integer(a, "gen_ai.usage.input_tokens"),
        output_tokens=integer(a, "gen_ai.usage.output_tokens"),
        cache_read=integer(a, "gen_ai.usage.cache_read.input_tokens"),
        cache_write=integer(a, "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens"),
        duration_ms=number(a, DURATION_KEY),
    )


def _tool(a: Mapping[str, Any]) -> Reading:
    tool = string(a, "gen_ai.tool.name")
    if str(a.get("error.type", "")).lower() == "denied":
        return Reading("warning", text=f"Denied: {clean(tool, 60) or 'a tool'}")
    failed = _failure(a)
    return Reading(
        "tool",
        tool=tool,
        text=command(a.get("github.copilot.tool.parameters.command")) or command(a.get("gen_ai.tool.call.arguments")),
        duration_ms=number(a, DURATION_KEY),
        failed=failed is not None,
        error=failed,
    )


# By gen_ai.operation.name, as "copilot.<operation>" (not log event names:
# this module is not among batch.CLIS, whose names claim log records).
EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any]], Reading]]] = {
    "copilot.invoke_agent": _agent,
    "copilot.chat": _chat,
    "copilot.execute_tool": _tool,
    "copilot.permission": lambda a: LIFE,
    "copilot.execute_hook": lambda a: LIFE,
}


def event_of(attrs: Mapping[str, Any], span_name: str) -> str | None:
    """What a span of Copilot CLI is to this module, or None (not read)."""
    op = attrs.get(OPERATION)
    if not isinstance(op, str) or not op:
        op = span_name.split(" ", 1)[0]
    name = "copilot." + op
    return name if name in EVENTS else None
