"""Each run of a reused task id counts as a task of its own: run 2's model
calls are counted although run 1 of the same id has finished, and both runs
start and finish under one agent label."""

from __future__ import annotations

from prom_streams import feed, started_sink, val
from tests.core._reused import two_runs


def test_a_second_run_of_a_task_id_counts_its_calls() -> None:
    events = two_runs(calls=True)
    assert len({e.task.run_id for e in events}) == 2
    sink, registry = started_sink()
    feed(sink, events)
    assert val(registry, "spanvisor_tokens_total", agent="importer", direction="input") == 2_000
    assert val(registry, "spanvisor_tasks_started_total", agent="importer", repo="") == 2
    assert val(registry, "spanvisor_tasks_finished_total", agent="importer", repo="", outcome="complete") == 1
    assert val(registry, "spanvisor_tasks_finished_total", agent="importer", repo="", outcome="error") == 1
