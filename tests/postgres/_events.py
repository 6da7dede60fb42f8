"""Event builders for the postgres tests: real dataclasses, stable ids."""

from __future__ import annotations

import dataclasses

from spanvisor.events import (
    Artifact,
    ArtifactAdded,
    Checkpoint,
    ContextWarning,
    Event,
    TaskFinished,
    TaskStarted,
    TaskView,
    stable_id,
)

T0 = 1_750_000_000_000_000_000  # a fixed epoch in ns, so rows are reproducible
SECOND = 1_000_000_000


def view(task_no: int, agent: str = "rivet", **kw: object) -> TaskView:
    trace = stable_id("trace", agent, task_no)
    base = TaskView(
        task_id=stable_id("task", agent, task_no),
        trace_id=trace,
        root_span_id=trace[:16],
        agent_id=agent,
        agent_name=agent.title(),
        task_name=f"Task {task_no}",
        repo="acme/plant",
        branch="fix/gasket",
        pull_request="https://git.example/acme/plant/pull/9",
        status="starting",
        steps=("plan", "act", "verify"),
        model="claude-sonnet-4",
        context_limit=200_000,
        started_ns=T0 + task_no * SECOND,
        updated_ns=T0 + task_no * SECOND,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def task_stream(
    task_no: int,
    checkpoints: int = 5,
    agent: str = "rivet",
    outcome: str = "complete",
    finish: bool = True,
) -> list[Event]:
    """A whole task: start, checkpoints, a warning, an artifact, the finish."""
    start = T0 + task_no * SECOND
    v = view(task_no, agent)
    out: list[Event] = [TaskStarted(event_id=stable_id(v.task_id, "start"), time_ns=start, task=v)]
    for i in range(checkpoints):
        t = start + (i + 1) * 1_000_000
        v = dataclasses.replace(
            v,
            status="working",
            progress=round(100 * (i + 1) / (checkpoints + 1), 2),
            step=v.steps[i % 3],
            message=f"checkpoint {i}",
            updated_ns=t,
            context_tokens=1000 * (i + 1),
            input_tokens=500 * (i + 1),
            output_tokens=50 * (i + 1),
        )
        out.append(
            Checkpoint(
                event_id=stable_id(v.task_id, "cp", i),
                time_ns=t,
                task=v,
                source="event",
                changed=("progress",),
                attributes={"i": i},
            )
        )
    t = start + (checkpoints + 1) * 1_000_000
    v = dataclasses.replace(v, status="context_warning", context_tokens=150_000, updated_ns=t)
    out.append(
        ContextWarning(
            event_id=stable_id(v.task_id, "warn"),
            time_ns=t,
            task=v,
            level="warning",
            threshold=0.7,
            ratio=0.75,
            tokens=150_000,
            limit=200_000,
        )
    )
    art = Artifact(name="report.md", uri="s3://bucket/report.md", kind="file")
    t += 1_000_000
    v = dataclasses.replace(v, artifacts=(art,), updated_ns=t)
    out.append(ArtifactAdded(event_id=stable_id(v.task_id, "art"), time_ns=t, task=v, artifact=art))
    if finish:
        t += 1_000_000
        v = dataclasses.replace(v, status=outcome, progress=100.0, updated_ns=t, ended_ns=t)  # type: ignore[arg-type]
        out.append(
            TaskFinished(
                event_id=stable_id(v.task_id, "end"),
                time_ns=t,
                task=v,
                outcome=outcome,  # type: ignore[arg-type]
                duration_s=(t - start) / SECOND,
                error_type="ValueError" if outcome == "error" else None,
                error_message="bad gasket" if outcome == "error" else None,
            )
        )
    return out
