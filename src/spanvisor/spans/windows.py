"""Context windows of common models, and how a model's is looked up.

Part of the span conventions (:mod:`spanvisor.spans.conventions` re-exports
both names): which model a call used is read there, its window here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Context windows of common models, in tokens. Matched by longest prefix of
# the (lower-cased) model name; config ``model_context_windows`` overrides.
MODEL_CONTEXT_WINDOWS: Final[Mapping[str, int]] = {
    "claude-opus-4": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-haiku-4": 200_000,
    "claude-3-7-sonnet": 200_000,
    "claude-3-5-sonnet": 200_000,
    "claude-3-5-haiku": 200_000,
    "claude-3-opus": 200_000,
    "claude-3-haiku": 200_000,
    "claude": 200_000,
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.5": 128_000,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1-mini": 128_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    # Gemini CLI's default models (gemini-3-pro-preview, gemini-2.5-pro/flash).
    "gemini-3": 1_048_576,
    "gemini-2.5": 1_048_576,
    "gemini-2.0": 1_048_576,
    "gemini-1.5-pro": 2_097_152,
    "gemini-1.5-flash": 1_048_576,
    "llama-3.1": 128_000,
    "llama-3.3": 128_000,
    "mistral-large": 128_000,
    "deepseek-chat": 128_000,
    "deepseek-reasoner": 128_000,
}


class ContextWindows:
    """Looks up a model's window: the built-in table plus overrides."""

    def __init__(self, overrides: Mapping[str, int] | None = None) -> None:
        table = {k.lower(): v for k, v in MODEL_CONTEXT_WINDOWS.items()}
        table.update({k.lower(): v for k, v in (overrides or {}).items()})
        # Longest prefix first, so "gpt-4o" wins over "gpt-4".
        self._prefixes = sorted(table.items(), key=lambda kv: -len(kv[0]))
        self._cache: dict[str, int | None] = {}

    def lookup(self, model: str | None) -> int | None:
        if not model:
            return None
        if model in self._cache:
            return self._cache[model]
        name = model.lower()
        # Provider-qualified names such as "anthropic/claude-..." or
        # "us.anthropic.claude-..." (Bedrock) match on their last part.
        for sep in ("/", "anthropic."):
            if sep in name:
                name = name.rsplit(sep, 1)[1]
        found = next((v for k, v in self._prefixes if name.startswith(k)), None)
        if len(self._cache) < 4096:
            self._cache[model] = found
        return found
