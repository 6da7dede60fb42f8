"""The metrics state's bounds: open and finished tasks, oldest first."""

from __future__ import annotations

from prom_streams import S, view

from spanvisor.events import Checkpoint, TaskFinished, TaskStarted, stable_id
from spanvisor_prometheus.state import TaskMetrics

T0 = 1_700_000_000 * S


def test_open_and_finished_tasks_keep_the_newest_within_their_bound() -> None:
    m = TaskMetrics(max_open_tasks=3)
    views = [view("rivet", n, T0 + n * S, run_id=f"r{n}") for n in range(6)]
    m.absorb([TaskStarted(event_id=stable_id("start", n), time_ns=v.started_ns, task=v) for n, v in enumerate(views)])
    assert list(m.open) == [f"{v.task_id}/{v.run_id}" for v in views[3:]]  # the oldest went first
    assert m.evicted_open == 3
    m.absorb(
        [
            TaskFinished(
                event_id=stable_id("end", n), time_ns=v.started_ns + S, task=v, outcome="complete", duration_s=1.0
            )
            for n, v in enumerate(views)
        ]
    )
    assert not m.open
    # The last three finished are remembered: a late event does not reopen them.
    late = [Checkpoint(event_id=stable_id("late", n), time_ns=T0 + 99 * S, task=v) for n, v in enumerate(views)]
    m.absorb(late[3:])
    assert not m.open
    m.absorb(late[:1])  # finished longer ago than the bound keeps: open again
    assert list(m.open) == [f"{views[0].task_id}/{views[0].run_id}"]
