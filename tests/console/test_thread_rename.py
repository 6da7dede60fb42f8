"""The shared thread renderer keeps a task's lines across its rename (issue
66): a milestone reached under the derived id is not said again under the
id the root named, and the lines go on under it."""

from __future__ import annotations

from dataclasses import replace

from spanvisor.display.thread import ThreadPolicy
from spanvisor.events import Checkpoint, TaskView

DERIVED = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"


def test_lines_follow_the_rename() -> None:
    policy = ThreadPolicy()
    v = TaskView(task_id=DERIVED, trace_id="t" * 32, root_span_id="r" * 16, agent_id="a", progress=30.0, seq=1)
    first = policy.lines(Checkpoint(event_id="e1", time_ns=1, task=v, changed=("progress",)))
    assert [x.summary for x in first] == ["25% reached"]
    x = replace(v, task_id="job-42", former_id=DERIVED, progress=40.0, seq=2)
    assert policy.lines(Checkpoint(event_id="e2", time_ns=2, task=x, changed=("progress",))) == []
    assert list(policy._tasks) == ["job-42"]
    later = policy.lines(Checkpoint(event_id="e3", time_ns=3, task=replace(x, progress=55.0, seq=3)))
    assert [x.summary for x in later] == ["50% reached"]
