"""Finished tasks far off their agent's usual: tokens, cost or duration above
the p95 of the agent's last tasks, said in the completion summary as
"3.4x this agent's usual cost" (relative to the median).

The history is the last ``HISTORY`` finished tasks per agent (at most
``MAX_AGENTS`` agents) seen by this process; nothing is judged before
``MIN_HISTORY`` of them. It is per process: a restart starts it again.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque
from dataclasses import dataclass, field

HISTORY = 50
MIN_HISTORY = 20
MAX_AGENTS = 1000
_WHAT = ("tokens", "cost", "duration")


@dataclass
class OutlierBook:
    _by_agent: OrderedDict[str, deque[tuple[float, float, float]]] = field(default_factory=OrderedDict)

    def judge(self, agent: str, tokens: float, cost: float, duration_s: float) -> tuple[str, ...]:
        """Notes for this finished task against its agent's history; then the
        task joins the history."""
        past = self._by_agent.get(agent)
        out: list[str] = []
        if past is not None and len(past) >= MIN_HISTORY:
            for i, (what, value) in enumerate(zip(_WHAT, (tokens, cost, duration_s), strict=True)):
                series = sorted(p[i] for p in past)
                p95 = statistics.quantiles(series, n=20, method="inclusive")[-1]
                usual = statistics.median(series)
                if usual > 0 and value > p95:
                    out.append(f"{value / usual:.1f}x this agent's usual {what}")
        if past is None:
            past = self._by_agent[agent] = deque(maxlen=HISTORY)
            while len(self._by_agent) > MAX_AGENTS:
                self._by_agent.popitem(last=False)
        self._by_agent.move_to_end(agent)
        past.append((tokens, cost, duration_s))
        return tuple(out)


__all__ = ["MIN_HISTORY", "OutlierBook"]
