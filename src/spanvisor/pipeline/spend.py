"""Spending totals shared through the state store (issue 12): a stub the
shared-ledger work fills in. ``start`` runs on the pipeline loop once the
state store is open; ``stop`` at shutdown.
"""

from __future__ import annotations

from spanvisor.sink import SinkContext
from spanvisor.tracking.cost import Ledger


class SpendSync:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def start(self, ctx: SinkContext) -> None:
        return None

    async def stop(self) -> None:
        return None


__all__ = ["SpendSync"]
