"""One truth per task: the progress every sink shows of a task is the same.

A task that completed is done, whatever its agent last reported (30 %,
then the end): the console and Slack showed 100 % while the database, and
so ``spanvisor tasks`` and the dashboards that read it, kept the last
figure (issue 66). Every place that writes or shows a task's progress now
reads it through :func:`spanvisor.display.task.progress_of`; hypothesis
holds them to it for any status and any reported figure, on every event
kind that carries a view: the PostgreSQL task row and timeline rows,
``/spanvisor status`` and the card. The event stream is the data a program
reads, not a display: it carries the figure the agent reported.
Each row shows the state as of its own event: a checkpoint before the end
keeps the figure reported then.
"""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.display.task import progress_of
from spanvisor.events import Checkpoint, TaskFinished, TaskView
from spanvisor.stream.body import body
from spanvisor.stream.encoded import encoded
from spanvisor_postgres.rows import checkpoint_record, task_row
from spanvisor_slack.slash import _line

STATUSES = ["starting", "working", "awaiting_approval", "complete", "error", "cancelled", "lost", "evicted"]
BASE = TaskView(task_id="t-1", trace_id="a" * 32, root_span_id="b" * 16, agent_id="agent", started_ns=1_000)


def _event(view: TaskView) -> Checkpoint | TaskFinished:
    if view.status in ("complete", "error", "cancelled", "lost", "evicted"):
        ended = replace(view, ended_ns=9_000)
        return TaskFinished(event_id="e-end", time_ns=9_000, task=ended, outcome=view.status, duration_s=0.008)  # type: ignore[arg-type]
    return Checkpoint(event_id="e-1", time_ns=5_000, task=view, changed=("progress",))


@given(status=st.sampled_from(STATUSES), reported=st.one_of(st.none(), st.floats(0, 100)))
def test_every_sink_shows_the_same_progress(status: str, reported: float | None) -> None:
    view = replace(BASE, status=status, progress=reported)  # type: ignore[arg-type]
    event = _event(view)
    shown = progress_of(event.task)
    assert shown == (100.0 if status == "complete" else reported)
    assert task_row(event).values["progress"] == shown
    if isinstance(event, Checkpoint):  # the timeline's rows; the end is the task row's
        assert checkpoint_record(event)[7] == shown
    # The event stream is the data, not a display: the figure reported.
    assert body(event)["task"]["progress"] == reported
    assert json.loads(encoded(event))["task"]["progress"] == reported
    if shown is not None:
        assert f"{shown:.0f}%" in _line(event.task, None, 10_000)


def test_a_checkpoint_before_the_end_keeps_the_figure_of_its_time() -> None:
    working = replace(BASE, status="working", progress=30.0)
    before = _event(working)
    after = _event(replace(working, status="complete"))
    assert checkpoint_record(before)[7] == 30.0 and task_row(before).values["progress"] == 30.0
    assert task_row(after).values["progress"] == 100.0
