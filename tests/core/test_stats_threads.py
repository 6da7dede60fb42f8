"""PipelineStats counts without a lock on the hot path (a dict per thread):
no increment is lost when threads count the same counter at once, a reader
running meanwhile never fails, and counts of a thread that ended stay."""

from __future__ import annotations

import threading

from spanvisor.stats import PipelineStats

PER_THREAD = 20_000


def test_concurrent_increments_are_exact_and_readable_meanwhile() -> None:
    stats = PipelineStats()
    go = threading.Barrier(5)

    def count() -> None:
        go.wait()
        for _ in range(PER_THREAD):
            stats.inc("spans_in_tasks_total")
            stats.inc("events_emitted_total", kind="Checkpoint")
            stats.inc("dropped_total", 2, reason="queue_full", sink="postgres")

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    go.wait()
    seen = 0.0
    while any(t.is_alive() for t in threads):
        now = stats.value("spans_in_tasks_total")
        assert now >= seen  # a reader sees counts only grow
        seen = now
        assert sum(v for (n, _), v in stats.counters.items() if n == "events_emitted_total") <= 4 * PER_THREAD
    for t in threads:
        t.join()
    assert stats.value("spans_in_tasks_total") == 4 * PER_THREAD
    assert stats.value("events_emitted_total", kind="Checkpoint") == 4 * PER_THREAD
    assert stats.value("dropped_total", reason="queue_full", sink="postgres") == 8 * PER_THREAD
    assert stats.value("dropped_total", sink="postgres", reason="queue_full") == 8 * PER_THREAD
    assert stats.total("dropped_total") == 8 * PER_THREAD
    assert stats.counters[("spans_in_tasks_total", ())] == 4 * PER_THREAD


def test_counts_of_a_finished_thread_stay_and_add_to_the_others() -> None:
    stats = PipelineStats()
    stats.inc("late_spans_total", 3)
    t = threading.Thread(target=lambda: stats.inc("late_spans_total", 4))
    t.start()
    t.join()
    stats.inc("late_spans_total")
    assert stats.value("late_spans_total") == 8
    assert stats.counters == {("late_spans_total", ()): 8}
