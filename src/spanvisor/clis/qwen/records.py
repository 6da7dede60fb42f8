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

from spanvisor.clis import gemini_shape as gr
from spanvisor.clis.records import LIFE, Reading

CLI: Final = "Qwen Code"
SERVICES: Final = frozenset({"qwen-code"})
SESSION_KEYS: Final = ("session.id",)
PROVIDER: Final = "openai"  # its OpenAI-compatible API (the model names the vendor)
# Its SDK percent-decodes OTEL_RESOURCE_ATTRIBUTES, as the OTel specification asks.
DECODES_RESOURCE: Final = True


_CALL = gr.call_by(None)

EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any]], Reading]]] = {
    "qwen-code.config": lambda a: LIFE,
    "qwen-code.auth": lambda a: LIFE,
    "qwen-code.user_prompt": gr.prompt,
    "qwen-code.api_request": lambda a: LIFE,
    "qwen-code.api_response": _CALL,
    "qwen-code.api_error": gr.error,
    "qwen-code.api_retry": lambda a: LIFE,
    "qwen-code.tool_call": gr.tool,
    "qwen-code.next_speaker_check": lambda a: LIFE,
    "qwen-code.chat_compression": lambda a: LIFE,
    "qwen-code.conversation_finished": lambda a: LIFE,
}
