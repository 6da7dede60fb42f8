"""The console says a stall and its resume, one line each per crossing, under
``spanvisor serve`` (``console_detail=tasks``) as in cards: a task whose agent
died shows its stall before its loss (issue 64). From the real tracker's
events, on a fake clock."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from spanvisor.config import Config
from spanvisor.events import Event
from spanvisor.receiver.serve import serve_config
from spanvisor.sink import SinkContext
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import LiveFact
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor.tracking.stalls import StallSettings
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker
from spanvisor_console import ConsoleSink
from tests.core._trees import FakeClock

T = "ab" * 16
R = "cd" * 8
START = {cv.TASK_NAME: "Fix the build", cv.AGENT_ID: "rivet", cv.TASK_ID: "job-1"}


def _fact(name: str, t: int) -> LiveFact:
    return LiveFact(T, R, name, t, dict(START) if name == cv.LIVE_TASK_START else {}, {cv.SERVICE_NAME: "worker"})


def _story() -> list[Event]:
    """Started, stalled (60 s quiet), resumed, stalled again, lost."""
    clock = FakeClock()
    settings = TrackerSettings(stalls=StallSettings(after_s=60.0, lost_after_s=3600.0))
    tr = TaskTracker(settings, clock=clock, wall_clock=lambda: int(clock.now * 1e9), root_hold_s=30.0)
    out = tr.live([_fact(cv.LIVE_TASK_START, 1_000)])
    clock.advance(61)
    out += tr.expire()
    clock.advance(30)
    out += tr.expire()  # still stalled: said once
    out += tr.live([_fact(cv.LIVE_HEARTBEAT, 2_000)])
    clock.advance(61)
    out += tr.expire()
    clock.advance(3600)
    out += tr.expire()
    assert [e.kind for e in out] == ["TaskStarted", "TaskStalled", "TaskResumed", "TaskStalled", "TaskFinished"]
    return out


def _sink(config: Config) -> tuple[ConsoleSink, io.StringIO]:
    out = io.StringIO()
    sink = ConsoleSink(stream=out, interval_s=3600)
    ctx = SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats())
    asyncio.run(sink.start(ctx))
    return sink, out


def test_serve_prints_a_line_per_stall_and_resume_before_the_loss(tmp_path: Path) -> None:
    config = serve_config(Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}))
    assert config["console_detail"] == "tasks"
    sink, out = _sink(config)
    events = _story()
    for ev in events:  # one batch each, as the clock says them
        asyncio.run(sink.export([ev]))
    asyncio.run(sink.export(events))  # a replay prints nothing again
    lines = out.getvalue().splitlines()
    assert lines[1:4] == [
        "⏸️ rivet · Fix the build · stalled: no sign of life for 1m 01s",
        "▶️ rivet · Fix the build · resumed: a sign of life after 1m 31s",
        "⏸️ rivet · Fix the build · stalled: no sign of life for 1m 01s",
    ], lines
    assert len(lines) == 5 and lines[0].endswith("· started (task job-1)") and "Lost" in lines[4], lines


def test_cards_print_each_stall_and_resume_once() -> None:
    sink, out = _sink(Config.load(env={}))
    events = _story()
    asyncio.run(sink.export(events))
    asyncio.run(sink.export(events))
    text = out.getvalue()
    assert text.count("No activity for 1m 01s") == 2 and text.count("Activity again after 1m 31s") == 1, text
