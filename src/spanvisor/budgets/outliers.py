"""Finished tasks far off their agent's usual: tokens, cost or duration above
the p95 of the agent's last tasks, said in the completion summary as
"3.4x this agent's usual cost" (relative to the median).

The history is the last ``HISTORY`` complete tasks per agent (at most
``MAX_AGENTS`` agents); nothing is judged before ``MIN_HISTORY`` of them. It
is learnt in memory from the tasks this process finishes, and seeded at start
from a :class:`TaskHistory` when the state store offers one (the PostgreSQL
store does: ``spanvisor_postgres.history``), so a restart or a new replica
judges from the database's history instead of starting again.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

HISTORY = 50
MIN_HISTORY = 20
MAX_AGENTS = 1000
_WHAT = ("tokens", "cost", "duration")
# One finished task: tokens (input + output), cost in dollars, duration in seconds.
Sample = tuple[float, float, float]


@runtime_checkable
class TaskHistory(Protocol):
    """Optional on a state store: recent complete tasks from durable history."""

    async def recent_tasks(self, n: int, max_agents: int) -> Mapping[str, Sequence[Sample]]:
        """Per agent (the ``max_agents`` most recently active), its last ``n``
        complete tasks, oldest first."""
        ...


@dataclass
class OutlierBook:
    _by_agent: OrderedDict[str, deque[Sample]] = field(default_factory=OrderedDict)

    def seed(self, history: Mapping[str, Sequence[Sample]]) -> int:
        """Put older tasks (oldest first) before what this process has learnt
        since it started; answers how many were taken."""
        taken = 0
        for agent, samples in list(history.items())[-MAX_AGENTS:]:
            clean = [(float(s[0]), float(s[1]), float(s[2])) for s in samples if _sample_ok(s)][-HISTORY:]
            if not clean:
                continue
            learnt = self._by_agent.get(agent, ())
            merged: deque[Sample] = deque(maxlen=HISTORY)
            merged.extend(clean)
            merged.extend(learnt)
            if agent not in self._by_agent:
                self._by_agent[agent] = merged
                self._by_agent.move_to_end(agent, last=False)  # older than agents learnt live
            else:
                self._by_agent[agent] = merged
            taken += len(clean)
        while len(self._by_agent) > MAX_AGENTS:
            self._by_agent.popitem(last=False)
        return taken

    def history(self, agent: str) -> tuple[Sample, ...]:
        return tuple(self._by_agent.get(agent, ()))

    def judge(self, agent: str, tokens: float, cost: float, duration_s: float) -> tuple[str, ...]:
        """Notes for this finished task against its agent's history; then the
        task joins the history."""
        past = self._by_agent.get(agent)
        out: list[str] = []
        if past is not None and len(past) >= MIN_HISTORY:
            for i, (what, value) in enumerate(zip(_WHAT, (tokens, cost, duration_s), strict=True)):
                series = sorted([p[i] for p in past])
                p95, usual = _p95_and_median(series)
                if usual > 0 and value > p95:
                    out.append(f"{value / usual:.1f}x this agent's usual {what}")
        if past is None:
            past = self._by_agent[agent] = deque(maxlen=HISTORY)
            while len(self._by_agent) > MAX_AGENTS:
                self._by_agent.popitem(last=False)
        self._by_agent.move_to_end(agent)
        past.append((tokens, cost, duration_s))
        return tuple(out)


def _p95_and_median(data: list[float]) -> tuple[float, float]:
    """``statistics.quantiles(data, n=20, method="inclusive")[-1]`` and
    ``statistics.median(data)`` of sorted ``data`` (at least two values), by
    the very same arithmetic, without computing the other 18 cut points or
    sorting twice more."""
    j, delta = divmod(19 * (len(data) - 1), 20)
    p95 = (data[j] * (20 - delta) + data[j + 1] * delta) / 20
    half = len(data) // 2
    return p95, (data[half] if len(data) % 2 else (data[half - 1] + data[half]) / 2)


def _sample_ok(s: object) -> bool:
    return (
        isinstance(s, tuple | list)
        and len(s) == 3
        and all(isinstance(x, int | float) and not isinstance(x, bool) and 0 <= x < math.inf for x in s)
    )


__all__ = ["HISTORY", "MAX_AGENTS", "MIN_HISTORY", "OutlierBook", "Sample", "TaskHistory"]
