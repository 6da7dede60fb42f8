"""A task's context-window figures: what the agent reports, else its model calls.

The agent may report occupancy itself (``agent.context.tokens`` /
``agent.context.limit``); it then wins over model calls whatever order spans
arrive in. Otherwise every chat-like model call updates its conversation
(:mod:`spanvisor.tracking.occupancy`: the call that started last is its
latest, so parallel calls ending out of order do not lower it) and the task
shows the fullest active one, with that conversation's model and window. Embeddings and other calls that hold no
conversation add to token totals only.
"""

from __future__ import annotations

import math
from typing import Any

from spanvisor.spans import conventions as cv
from spanvisor.tracking.occupancy import FORECAST_CALLS, Conversations, LevelGate, new_occupancy
from spanvisor.tracking.settings import TrackerSettings
from spanvisor.tracking.working import Working


class TaskContext:
    __slots__ = ("_judged", "conversations", "explicit_limit", "explicit_tokens", "gate", "thresholds", "windows")

    def __init__(self, settings: TrackerSettings) -> None:
        self.windows = settings.windows
        self.thresholds = settings.thresholds
        self.conversations = Conversations()
        # None until the task reaches a level or a forecast is said (64
        # bytes in every open task otherwise; most never reach one).
        self.gate: LevelGate | None = None
        self.explicit_limit: int | None = None
        self.explicit_tokens = False
        # The ratio the gate last judged: the same ratio again crosses
        # nothing and re-arms nothing (LevelGate.crossed is idempotent).
        self._judged = -1.0

    def model_call(
        self,
        w: Working,
        attrs: Any,
        span: tuple[str, str | None],
        tokens: int,
        model: str | None,
        times: tuple[int, int],
    ) -> None:
        """Set the working fields a model call changes (``context_tokens``,
        ``context_limit``, ``model``); none for calls that hold no conversation.
        ``span``: the call's (span id, parent span id); ``times``: its (start, end)."""
        if not cv.holds_conversation(attrs):
            return
        raw_key = attrs.get(cv.GEN_AI_CONVERSATION)
        span_id, parent_id = span
        key = f"c:{raw_key}" if isinstance(raw_key, str) and raw_key else f"p:{parent_id or ''}"
        start_ns, end_ns = times
        occ = new_occupancy(tokens, self.windows.lookup(model), model, end_ns, span_id, start_ns)
        self.conversations.record(key, occ)
        fullest = self.conversations.fullest()
        if fullest is None:
            return
        best = fullest[1]
        # All from the fullest conversation alone, so every arrival order agrees.
        w.model = best.model
        if not self.explicit_tokens:
            w.context_tokens = best.tokens
        if self.explicit_limit is None:
            w.context_limit = best.limit

    def crossed(self, tokens: int | None, limit: int | None) -> list[tuple[float, int, float]]:
        """Levels crossed now: (level, crossing number, ratio)."""
        if tokens is None or not limit:
            return []
        ratio = tokens / limit
        if ratio == self._judged:
            return []  # nothing moved since the last call: no level to cross
        self._judged = ratio
        gate = self.gate
        if gate is None:
            for level in self.thresholds:
                if ratio >= level:
                    break
            else:
                return []  # below every level, none fired: nothing to cross or re-arm
            gate = self.gate = LevelGate(self.thresholds)
        return [(level, n, ratio) for level, n in gate.crossed(ratio)]

    def forecast(self) -> tuple[float, int, float | None, int, int] | None:
        """(level, calls, eta_s, tokens, limit) when the fullest conversation is
        set to pass the next level within FORECAST_CALLS calls; said once."""
        fullest = self.conversations.fullest()
        if fullest is None or self.explicit_tokens:
            return None  # no calls yet, or the agent reports occupancy itself: no trend
        key, occ = fullest
        limit = self.explicit_limit or occ.limit
        if not limit:
            return None
        ratio = occ.tokens / limit
        gate = self.gate
        if gate is not None:
            level = gate.next_level(ratio)
        else:  # nothing fired nor forecast yet: the lowest level above the ratio
            level = None
            for lv in self.thresholds:
                if ratio < lv:
                    level = lv
                    break
        if level is None:
            return None
        target = math.ceil(level * limit)
        points = self.conversations.points(key)
        if (
            points
            and 0 <= (rise := points[-1][1] - points[0][1]) < 1 << 40
            and target - points[-1][1] > rise * FORECAST_CALLS
        ):
            # Too far to be reached within FORECAST_CALLS calls: the median
            # step calls_to would take is at most the whole recent rise (or a
            # step falls, and there is no trend), so it could only say more.
            return None
        eta = self.conversations.calls_to(key, target)
        if eta is None or eta[0] > FORECAST_CALLS:
            return None
        if gate is None:
            gate = self.gate = LevelGate(self.thresholds)
        gate.forecast |= {level}
        return level, eta[0], eta[1], occ.tokens, limit

    def level_name(self, level: float) -> str:
        top = self.thresholds[-1] if self.thresholds else None
        return "critical" if level == top and len(self.thresholds) > 1 else "warning"


# TrackerSettings lives in .settings; still importable from here.
__all__ = ["TaskContext", "TrackerSettings"]
