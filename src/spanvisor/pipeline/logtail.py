"""Each open task's last log records (issue 15): a stub the log-tail work fills in.

``add`` takes records from any thread (never blocks, never raises);
``enrich`` runs on the pipeline thread and returns the events to dispatch,
with a finished task's ``log_tail`` filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spanvisor.events import Event
from spanvisor.stats import PipelineStats


class LogTails:
    def __init__(self, config: Any, stats: PipelineStats) -> None:
        self.config = config
        self.stats = stats

    def add(self, records: Sequence[Any]) -> bool:
        return True

    def enrich(self, events: list[Event]) -> list[Event]:
        return events


__all__ = ["LogTails"]
