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

from spanvisor.clis import gemini_shape as gr
from spanvisor.clis.records import LIFE, Reading

CLI: Final = "Gemini CLI"
SERVICES: Final = frozenset({"gemini-cli"})
SESSION_KEYS: Final = ("session.id",)
PROVIDER: Final = "google"
# Its SDK percent-decodes OTEL_RESOURCE_ATTRIBUTES, as the OTel specification asks.
DECODES_RESOURCE: Final = True


_CALL = gr.call_by(PROVIDER)

EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any]], Reading]]] = {
    "gemini_cli.config": lambda a: LIFE,
    "gemini_cli.user_prompt": gr.prompt,
    "gemini_cli.api_request": lambda a: LIFE,
    "gemini_cli.api_response": _CALL,
    "gemini_cli.api_error": gr.error,
    "gemini_cli.tool_call": gr.tool,
    "gemini_cli.hook_call": lambda a: LIFE,
    "gemini_cli.model_routing": lambda a: LIFE,
    "gemini_cli.next_speaker_check": lambda a: LIFE,
    "gemini_cli.flash_fallback": lambda a: LIFE,
}
