"""A finished task shows no current step: not "▶ Write report" once complete.

The console and Slack take the steps line from ``presentation.steps_line``;
both are checked here on the views a real task produces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json

from spanvisor.config import Config
from spanvisor.display import task as pr
from spanvisor.events import TaskFinished, TaskView
from spanvisor.sink import SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_console import ConsoleSink
from spanvisor_slack.blocks import Look, parent_payload

S = 1_000_000_000
STEPS = ("Plan", "Gather data", "Write report")


def _view(status: str, step: str | None, **kw: object) -> TaskView:
    return TaskView(
        task_id="t-1",
        trace_id="0" * 31 + "1",
        root_span_id="0" * 15 + "1",
        agent_id="rivet",
        task_name="Quarterly report",
        status=status,  # type: ignore[arg-type]
        steps=STEPS,
        step=step,
        started_ns=10 * S,
        updated_ns=20 * S,
        **kw,  # type: ignore[arg-type]
    )


def test_a_running_task_shows_its_current_and_next_step() -> None:
    assert pr.steps_line(_view("working", "Gather data")) == "(2/3) ✓ Plan → ▶ Gather data → Write report"
    assert pr.steps_line(_view("context_warning", "Write report")) == "(3/3) ✓ Gather data → ▶ Write report"


def test_a_complete_task_has_no_current_step() -> None:
    line = pr.steps_line(_view("complete", "Write report", ended_ns=30 * S))
    assert line == "(3/3) ✓ Gather data → ✓ Write report"
    assert "▶" not in (line or "")


def test_a_failed_or_cancelled_task_marks_where_it_stopped_and_shows_no_next_step() -> None:
    assert pr.steps_line(_view("error", "Gather data")) == "(2/3) ✓ Plan → ✗ Gather data"
    assert pr.steps_line(_view("cancelled", "Plan")) == "(1/3) ⏹ Plan"


def test_steps_without_a_known_current_step_are_unchanged() -> None:
    assert pr.steps_line(_view("complete", None)) == "Plan → Gather data → Write report"
    assert pr.steps_line(dataclasses.replace(_view("complete", "Write report"), steps=())) == "Write report"


def _finished(view: TaskView) -> TaskFinished:
    return TaskFinished(event_id="e-fin", time_ns=30 * S, task=view, outcome="complete", duration_s=20.0)


def test_console_final_card_shows_the_last_step_done() -> None:
    out = io.StringIO()
    sink = ConsoleSink(stream=out, interval_s=0)
    ctx = SinkContext(config=Config.load(env={}, extra=()), state_store=InMemoryStateStore(), stats=PipelineStats())
    asyncio.run(sink.start(ctx))
    done = _view("complete", "Write report", ended_ns=30 * S)
    working = dataclasses.replace(done, status="working", ended_ns=None)
    assert "▶ Write report" in sink.render_card(working, 30 * S)
    # Through the sink's export, as the pipeline calls it.
    asyncio.run(sink.export([_finished(done)]))
    text = out.getvalue()
    assert "steps: (3/3) ✓ Gather data → ✓ Write report" in text
    assert "▶" not in text


def test_slack_parent_of_a_complete_task_shows_the_last_step_done() -> None:
    done = _view("complete", "Write report", ended_ns=30 * S)
    payload = parent_payload(done, Look(), 30 * S)
    blocks = [*payload["blocks"], *(b for a in payload["attachments"] for b in a["blocks"])]
    steps = [b for b in blocks if b.get("block_id") == "sv-steps"]
    assert len(steps) == 1
    assert "✓ Write report" in steps[0]["text"]["text"]
    assert "▶" not in json.dumps(payload, ensure_ascii=False)


def test_the_console_prints_no_card_for_a_late_correction_and_forgets_the_task() -> None:
    """Found by review: a late span's correction of a finished task printed its
    card again and kept the task in the console's memory forever."""
    import asyncio
    import dataclasses
    import io

    from spanvisor.events import Checkpoint, TaskFinished, TaskView
    from spanvisor_console import ConsoleSink

    out = io.StringIO()
    sink = ConsoleSink(stream=out)
    events = []
    for i in range(50):
        view = TaskView(task_id=f"t{i}", trace_id="0" * 32, root_span_id="0" * 16, agent_id="a", seq=1)
        done = dataclasses.replace(view, status="complete", ended_ns=10, seq=2)
        late = dataclasses.replace(done, input_tokens=5, seq=3)
        events += [
            TaskFinished(event_id=f"f{i}", time_ns=10, task=done, outcome="complete", duration_s=0.0),
            Checkpoint(event_id=f"c{i}", time_ns=11, task=late, source="model_call"),
        ]
    asyncio.run(sink.export(events))
    assert out.getvalue().count("a · complete") == 50  # one card per task, none for the corrections
    assert len(sink._last_card) == 0  # and nothing is remembered of them
