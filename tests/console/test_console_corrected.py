"""A TaskCorrected (the late-span rule) on the console: one line saying what
the late span added, no second card, nothing on a replay."""

from __future__ import annotations

import asyncio
import io

from spanvisor.config import Config
from spanvisor.sink import SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_console import ConsoleSink
from tests.core._late import late_call_events


def test_a_correction_is_one_line_after_the_summary() -> None:
    events = late_call_events()
    out = io.StringIO()
    sink = ConsoleSink(stream=out, interval_s=3600)
    ctx = SinkContext(config=Config.load(env={}, extra=()), state_store=InMemoryStateStore(), stats=PipelineStats())
    asyncio.run(sink.start(ctx))
    asyncio.run(sink.export(events[:-1]))
    before = out.getvalue()
    asyncio.run(sink.export(events[-1:]))
    asyncio.run(sink.export(events[-1:]))
    added = out.getvalue()[len(before) :].strip().splitlines()
    assert len(added) == 1, added
    assert "corrected: +5,000 input tokens, +10 output tokens" in added[0]
    assert "from a call that ended after the task" in added[0]
