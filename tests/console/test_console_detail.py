"""The console's detail: cards in the demo and in-process, one line per task
start, end and decision under ``spanvisor serve`` (``console_detail=auto``),
from the real tracker's events."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from spanvisor.config import Config
from spanvisor.events import TaskFinished, TaskStarted
from spanvisor.receiver.serve import serve_config
from spanvisor.sink import SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_console import ConsoleSink
from tests.core._late import late_call_events


def _printed(config: Config, twice: bool = False) -> list[str]:
    events = [e for e in late_call_events() if isinstance(e, TaskStarted | TaskFinished)] + late_call_events()[1:2]
    out = io.StringIO()
    sink = ConsoleSink(stream=out, interval_s=3600)
    ctx = SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats())
    asyncio.run(sink.start(ctx))
    asyncio.run(sink.export(late_call_events()[:-1]))
    if twice:  # a replay prints nothing again
        asyncio.run(sink.export(events))
    return out.getvalue().splitlines()


def test_serve_prints_one_line_per_task_start_and_end(tmp_path: Path) -> None:
    env = {"SPANVISOR_DATA_DIR": str(tmp_path)}
    config = serve_config(Config.load(env=env))
    assert config["console_detail"] == "tasks"
    lines = _printed(config, twice=True)
    assert len(lines) == 2, lines
    assert lines[0].endswith("rivet · T-late · started"), lines  # the name comes with the root's end
    assert "Diagnose F47" in lines[1] and "Complete in 1s" in lines[1] and "tokens in 1,000 / out 100" in lines[1]


def test_an_explicit_choice_is_kept_under_serve(tmp_path: Path) -> None:
    env = {"SPANVISOR_DATA_DIR": str(tmp_path), "SPANVISOR_CONSOLE_DETAIL": "cards"}
    config = serve_config(Config.load(env=env))
    assert config["console_detail"] == "cards"
    assert len(_printed(config)) > 2  # the status card's lines and the thread's


def test_elsewhere_auto_prints_cards() -> None:
    config = Config.load(env={})
    assert config["console_detail"] == "auto"
    lines = _printed(config)
    assert any("context" in line for line in lines), lines  # a status card's detail line
