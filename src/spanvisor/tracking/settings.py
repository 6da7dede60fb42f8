"""What one tracker is configured with: context levels and windows, prices,
budgets, stall times. Plain data, read by every concern of a task and
imported by none of them back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spanvisor.budgets.ledger import BudgetSettings, Ledger
from spanvisor.budgets.outliers import OutlierBook
from spanvisor.gate.requirement import Floor
from spanvisor.spans.windows import ContextWindows
from spanvisor.tracking.prices import Pricer
from spanvisor.tracking.provisional import DEFAULT, ProvisionalRule
from spanvisor.tracking.tracebuffer import DEFAULT_PENDING_BYTES, DEFAULT_PLAIN_TTL_S, PendingSettings


@dataclass
class StallSettings:
    after_s: float = 600.0
    by_agent: Mapping[str, float] = field(default_factory=dict)
    lost_after_s: float = 86_400.0

    def limit(self, agent: str) -> float:
        return self.by_agent.get(agent, self.after_s)


@dataclass
class TrackerSettings:
    thresholds: tuple[float, ...] = (0.70, 0.85)
    windows: ContextWindows = field(default_factory=ContextWindows)
    pricer: Pricer = field(default_factory=Pricer)
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    # The spending of this tracker's tasks by agent, day and month (per
    # process): shared state, kept here because every task of the tracker adds to it.
    ledger: Ledger = field(init=False)
    # Each agent's recent finished tasks, to say when one is far off its usual.
    outliers: OutlierBook = field(default_factory=OutlierBook)
    stalls: StallSettings = field(default_factory=StallSettings)
    # When a trace's spans open its task before its root arrives (end order).
    provisional: ProvisionalRule = field(default_factory=ProvisionalRule)
    # The central policy (SPANVISOR_POLICY): the floor every approval request is raised to.
    floor: Floor | None = None
    # The bounds of the spans waiting for their task root (end order): bytes, and
    # how long a trace that shows nothing of an agent is kept (.tracebuffer).
    pending: PendingSettings = field(default_factory=PendingSettings)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.budgets)

    @classmethod
    def from_config(cls, c: Any) -> TrackerSettings:
        """From a :class:`spanvisor.config.Config` (read with ``get``: a partial
        config in tests gets the defaults)."""
        return cls(
            thresholds=tuple(c.get("context_thresholds", (0.70, 0.85))),
            windows=ContextWindows(c.get("model_context_windows") or {}),
            pricer=Pricer(c.get("model_prices") or {}),
            budgets=BudgetSettings(
                levels=tuple(c.get("budget_levels") or (0.8, 1.0)),
                task_usd=c.get("budget_task_usd") or {},
                agent_day_usd=c.get("budget_agent_day_usd") or {},
                day_usd=c.get("budget_day_usd"),
                month_usd=c.get("budget_month_usd"),
                stop=frozenset(c.get("budget_stop") or ()),
            ),
            stalls=StallSettings(
                after_s=float(c.get("stall_after_s", 600.0)),
                lost_after_s=float(c.get("lost_after_s", 86_400.0)),
                by_agent=c.get("stall_after_by_agent") or {},
            ),
            provisional=ProvisionalRule.parse(c.get("provisional", DEFAULT)),
            floor=central_floor(c.get("policy")),
            pending=PendingSettings(
                max_bytes=int(c.get("pending_max_bytes", DEFAULT_PENDING_BYTES)),
                plain_ttl_s=float(c.get("pending_plain_ttl_s", DEFAULT_PLAIN_TTL_S)),
            ),
        )


def central_floor(path: Any) -> Floor | None:
    """The central policy at ``path`` (read now, on the caller's thread: the
    shell parser is imported here, never on the pipeline's); one that
    cannot be read denies every request, and says why (``serve`` refuses to
    start with it instead)."""
    if not path:
        return None
    from spanvisor.gate.central import Broken, Holder, PolicyError

    try:
        return Holder(str(path))
    except PolicyError as exc:
        return Broken(str(exc))


__all__ = ["PendingSettings", "StallSettings", "TrackerSettings", "central_floor"]
