"""A task's context-window figures: what the agent reports, else its model calls.

The agent may report occupancy itself (``agent.context.tokens`` /
``agent.context.limit``); it then wins over model calls whatever order spans
arrive in. Otherwise every chat-like model call updates its conversation
(:mod:`spanvisor.occupancy`) and the task shows the fullest active one, with
that conversation's model and window. Embeddings and other calls that hold no
conversation add to token totals only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spanvisor.spans import conventions as cv
from spanvisor.tracking.occupancy import Conversations, LevelGate, Occupancy


@dataclass
class TrackerSettings:
    thresholds: tuple[float, ...] = (0.70, 0.85)
    windows: cv.ContextWindows = field(default_factory=cv.ContextWindows)


class TaskContext:
    def __init__(self, settings: TrackerSettings) -> None:
        self.windows = settings.windows
        self.thresholds = settings.thresholds
        self.conversations = Conversations()
        self.gate = LevelGate(settings.thresholds)
        self.explicit_limit: int | None = None
        self.explicit_tokens = False

    def model_call(
        self, attrs: Any, parent_id: str | None, tokens: int, model: str | None, end_ns: int
    ) -> dict[str, Any]:
        """The view fields a model call changes (``context_tokens``,
        ``context_limit``, ``model``); nothing for calls that hold no conversation."""
        if not cv.holds_conversation(attrs):
            return {}
        raw_key = attrs.get(cv.GEN_AI_CONVERSATION)
        key = f"c:{raw_key}" if isinstance(raw_key, str) and raw_key else f"p:{parent_id or ''}"
        self.conversations.record(key, Occupancy(tokens, self.windows.lookup(model), model, end_ns))
        best = self.conversations.fullest()
        if best is None:
            return {}
        changes: dict[str, Any] = {}
        if not self.explicit_tokens:
            changes["context_tokens"] = best.tokens
        if best.model:
            changes["model"] = best.model
        if self.explicit_limit is None and best.limit:
            changes["context_limit"] = best.limit
        return changes

    def crossed(self, tokens: int | None, limit: int | None) -> list[tuple[float, int, float]]:
        """Levels crossed now: (level, crossing number, ratio)."""
        if tokens is None or not limit:
            return []
        ratio = tokens / limit
        return [(level, n, ratio) for level, n in self.gate.crossed(ratio)]

    def level_name(self, level: float) -> str:
        top = self.thresholds[-1] if self.thresholds else None
        return "critical" if level == top and len(self.thresholds) > 1 else "warning"


__all__ = ["TaskContext", "TrackerSettings"]
