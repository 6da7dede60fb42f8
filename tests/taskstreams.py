"""Generated task event streams for the chat sinks' properties (Telegram,
Teams): a few tasks' steps, their ends, and one interleaving of them as
they could happen, each task's own order kept."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from spanvisor.events import Event
from tests.taskscript import TaskScript

Step = tuple[str, float, str]
ENDS = st.sampled_from(["complete", "error", "cancelled"])


def steps(words: st.SearchStrategy[str]) -> st.SearchStrategy[Step]:
    """A task's step: a checkpoint, a context warning or an artifact, saying ``words``."""
    return st.one_of(
        st.tuples(st.just("checkpoint"), st.floats(0, 100), words),
        st.tuples(st.just("warning"), st.sampled_from([0.7, 0.85]), words),
        st.tuples(st.just("artifact"), st.just(0.0), words),
    )


def tasks_events(plan: list[list[Step]], ends: list[str], failure: str) -> list[list[Event]]:
    """Each planned task's events: started, its steps, its end (``failure`` its error's message)."""
    per_task: list[list[Event]] = []
    for i, (planned, end) in enumerate(zip(plan, ends, strict=True)):
        task = TaskScript.new(f"prop-{i}", f"agent<{i}>", task_name=f"Task & {i}")
        events: list[Event] = [task.started()]
        for kind, x, words in planned:
            if kind == "checkpoint":
                events.append(task.checkpoint(progress=round(x, 1), message=words or None))
            elif kind == "warning":
                events.append(task.warning("warning" if x < 0.8 else "critical", int(200_000 * x), 200_000, x))
            else:
                events.append(task.artifact(words or "file"))
        fail = {"error_type": "E", "error_message": failure}
        events.append(task.finished(end, **(fail if end == "error" else {})))
        per_task.append(events)
    return per_task


def interleaved(per_task: list[list[Event]], data: Any) -> list[Event]:
    """The tasks' events as they could happen together, each task's own order kept."""
    stream: list[Event] = []
    cursors = [0] * len(per_task)
    while any(c < len(e) for c, e in zip(cursors, per_task, strict=True)):
        i = data.draw(st.sampled_from([k for k, e in enumerate(per_task) if cursors[k] < len(e)]))
        stream.append(per_task[i][cursors[i]])
        cursors[i] += 1
    return stream
