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
    # Claude: 1M where Anthropic's model pages (platform.claude.com/docs/en/
    # models/<model>/overview, Nov 2026) say so *and* Claude Code 2.1.330
    # runs the bare id with it (its stream-json modelUsage.contextWindow):
    # Opus 4.7 and 4.8, and every 5.x model (Claude Code's default is
    # claude-opus-5-5). Opus 4.6 and Sonnet 4.6 are 1M models on the API, but
    # Claude Code runs their bare ids with 200k unless asked for "[1m]", so
    # 200k stays here (a window taken too large would warn too late); a
    # model id with the "[1m]" suffix is 1M whatever its family. Sonnet 4.5,
    # Opus 4.5, Haiku 4.5 and older are 200k.
    "claude-opus-5": 1_000_000,
    "claude-sonnet-5": 1_000_000,
    "claude-haiku-5-5": 1_000_000,
    "claude-fable-5": 1_000_000,
    "claude-mythos-5": 1_000_000,
    "claude-opus-4-8": 1_000_000,
    "claude-opus-4-7": 1_000_000,
    "claude-opus-4": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-haiku-4": 200_000,
    "claude-3-7-sonnet": 200_000,
    "claude-3-5-sonnet": 200_000,
    "claude-3-5-haiku": 200_000,
    "claude-3-opus": 200_000,
    "claude-3-haiku": 200_000,
    "claude": 200_000,  # older and unknown Claude models
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


# Claude Code's model id for a model run with the 1M window (``sonnet[1m]``).
ONE_M_SUFFIX: Final = "[1m]"
ONE_M: Final = 1_000_000


class ContextWindows:
    """Looks up a model's window: the built-in table plus overrides (config
    ``model_context_windows``), which replace or extend it, all matched by
    longest prefix. A Claude Code id ending in ``[1m]`` is 1M unless an
    override is what matched it."""

    def __init__(self, overrides: Mapping[str, int] | None = None) -> None:
        own = {k.lower(): v for k, v in (overrides or {}).items()}
        table = {k.lower(): v for k, v in MODEL_CONTEXT_WINDOWS.items()} | own
        # Longest prefix first, so "gpt-4o" wins over "gpt-4".
        self._prefixes = sorted(table.items(), key=lambda kv: -len(kv[0]))
        self._own = frozenset(own)
        self._cache: dict[str, int | None] = {}

    def lookup(self, model: str | None) -> int | None:
        if not model:
            return None
        if model in self._cache:
            return self._cache[model]
        found = self._find(model.lower())
        if len(self._cache) < 4096:
            self._cache[model] = found
        return found

    def _find(self, name: str) -> int | None:
        # Provider-qualified names such as "anthropic/claude-..." or
        # "us.anthropic.claude-..." (Bedrock) match on their last part.
        for sep in ("/", "anthropic."):
            if sep in name:
                name = name.rsplit(sep, 1)[1]
        key, found = next(((k, v) for k, v in self._prefixes if name.startswith(k)), ("", None))
        if name.endswith(ONE_M_SUFFIX) and key not in self._own:
            return ONE_M
        return found
