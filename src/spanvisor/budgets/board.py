"""What the agent itself may read of its task's budget, in-process.

spanvisor only warns; stopping is the agent's choice. So that it can choose,
the tracker publishes, for each open task that has a budget, what the task
has used and may use; ``spanvisor.agent.TaskHandle.budget`` reads it by the
task root's ids. One dictionary per process, written by the pipeline's
thread and read by agent threads (single dict operations, safe under the
GIL); an entry lives while its task is open.
"""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]  # (trace id, root span id), lower-case hex


@dataclass(frozen=True, slots=True)
class BudgetState:
    used_usd: float
    budget_usd: float | None
    used_tokens: int
    budget_tokens: int | None
    unpriced_calls: int = 0

    @property
    def over(self) -> bool:
        """At or past any budget the task has."""
        return bool(
            (self.budget_usd and self.used_usd >= self.budget_usd)
            or (self.budget_tokens and self.used_tokens >= self.budget_tokens)
        )


_LIVE: dict[Key, BudgetState] = {}


def publish(key: Key, state: BudgetState | None) -> None:
    if state is None:
        _LIVE.pop(key, None)
    else:
        _LIVE[key] = state


def lookup(trace_id: str, root_span_id: str) -> BudgetState | None:
    return _LIVE.get((trace_id, root_span_id))


__all__ = ["BudgetState", "lookup", "publish"]
