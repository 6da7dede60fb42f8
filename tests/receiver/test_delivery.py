"""When a graceful stop may mark the span journal delivered."""

from __future__ import annotations

from spanvisor.receiver.delivery import DeliveryWatch, undelivered_drops
from spanvisor.stats import PipelineStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_which_drops_a_replay_could_undo() -> None:
    stats = PipelineStats()
    for reason in ("sink_failure", "dead_letter_full", "dead_letter_error"):
        stats.drop(reason, 2, sink="slack")
    stats.drop("tracker_error", 3)
    stats.drop("open_task_evicted", 1)
    assert undelivered_drops(stats) == 0
    stats.drop("shutdown_deadline", 4, sink="postgres")
    stats.drop("slack_undelivered", 1, sink="slack")
    stats.drop("inbox_full", 5)
    assert undelivered_drops(stats) == 10


def test_verdict() -> None:
    stats, clock = PipelineStats(), Clock()
    queued = [0.0]
    stats.gauge("queue_depth", lambda: queued[0], sink="slack")
    watch = DeliveryWatch(stats, retention_s=900, clock=clock)
    assert watch.verdict(flushed=True) == (True, "every sink delivered everything")
    assert not watch.verdict(flushed=False)[0]
    queued[0] = 3
    ok, why = watch.verdict(flushed=True)
    assert not ok and "3 spans or events were still queued" in why
    queued[0] = 0
    # A drop within the retention: its spans are still in the journal, replay them.
    stats.drop("queue_full", 7, sink="slack")
    watch.sample()
    clock.now += 899
    ok, why = watch.verdict(flushed=True)
    assert not ok and "7 events were dropped" in why
    # Older than the retention: those spans are gone from the journal anyway.
    clock.now += 2
    assert watch.verdict(flushed=True)[0]
