"""Did every sink get everything? Asked by a graceful stop before it marks
the span journal delivered (see :mod:`.journal`).

Yes when all of these hold:

- the pipeline's last flush finished in time (its inbox was pumped, every
  sink's queue passed the flush barrier, every sink's own flush said done);
- nothing is left in the inbox or in any sink's queue after the drain;
- no event a replay could bring back was dropped within the journal's
  retention: ``dropped_total`` for a sink (queue full, shutdown deadline,
  Slack updates left undelivered, ...) or for the inbox. Drops a replay
  cannot undo do not count: ``sink_failure`` (the sink rejected the batch
  for good; it would again), a poison event that could not be set aside
  (``dead_letter_full``/``dead_letter_error``; it would fail again), and the
  tracker's own (``tracker_error``, ``open_task_evicted``). Events set aside
  as dead letters are not drops: ``spanvisor deadletter retry`` resends them.

A drop older than the retention does not count either: the spans it came
from are no longer in the journal, so replaying could not bring it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from spanvisor.stats import PipelineStats

# Drop reasons a replay would only repeat.
NOT_UNDONE_BY_REPLAY = frozenset(
    {"sink_failure", "dead_letter_full", "dead_letter_error", "tracker_error", "open_task_evicted"}
)


def undelivered_drops(stats: PipelineStats) -> float:
    """Events dropped that a sink should have had and a replay could give it."""
    total = 0.0
    for (name, labels), value in list(stats.counters.items()):
        if name != "dropped_total":
            continue
        label = dict(labels)
        reason = label.get("reason", "")
        if reason in NOT_UNDONE_BY_REPLAY:
            continue
        if label.get("sink") or reason == "inbox_full":
            total += value
    return total


class DeliveryWatch:
    """Notes when undelivered drops happen; judges a drain at stop."""

    def __init__(self, stats: PipelineStats, retention_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stats = stats
        self.retention_s = retention_s
        self._clock = clock
        self._seen = undelivered_drops(stats)
        self._last_drop: float | None = None

    def sample(self) -> None:
        """Call now and then (the journal's trim loop does): a drop counts from when it is first seen."""
        seen = undelivered_drops(self.stats)
        if seen != self._seen:
            self._seen = seen
            self._last_drop = self._clock()

    def verdict(self, flushed: bool) -> tuple[bool, str]:
        """(everything delivered, why or why not), after the pipeline drained."""
        self.sample()
        if not flushed:
            return False, "the sinks did not finish within the shutdown deadline"
        if self._last_drop is not None and self._clock() - self._last_drop < self.retention_s:
            return (
                False,
                f"{self._seen:.0f} events were dropped (spanvisor_dropped_total) within the journal's retention",
            )
        try:
            left = self.stats.value("inbox_depth") + sum(
                fn() for (name, _), fn in list(self.stats.gauges.items()) if name == "queue_depth"
            )
        except Exception as exc:  # a gauge that cannot be read proves nothing
            return False, f"the queues cannot be read ({type(exc).__name__}: {exc})"
        if left:
            return False, f"{left:.0f} spans or events were still queued after the drain"
        return True, "every sink delivered everything"
