"""The console sink and people's decisions, results and log tails:
a line per decision, never a card from a view not known here."""

from __future__ import annotations

import asyncio
import dataclasses
import io

from spanvisor.config import Config
from spanvisor.events import (
    Decision,
    HumanIntervention,
    LogLine,
    ResultField,
    TaskFinished,
    TaskStarted,
    TaskView,
    stable_id,
)
from spanvisor.sink import SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from spanvisor_console import ConsoleSink

S = 1_000_000_000


def _sink() -> tuple[ConsoleSink, io.StringIO]:
    out = io.StringIO()
    sink = ConsoleSink(stream=out, interval_s=3600)
    ctx = SinkContext(config=Config.load(env={}, extra=()), state_store=InMemoryStateStore(), stats=PipelineStats())
    asyncio.run(sink.start(ctx))
    return sink, out


def _view(**kw: object) -> TaskView:
    base = TaskView(
        task_id="t-1",
        trace_id="0" * 31 + "1",
        root_span_id="0" * 15 + "1",
        agent_id="rivet",
        agent_name="Rivet",
        task_name="Deploy",
        status="awaiting_approval",
        started_ns=10 * S,
        updated_ns=20 * S,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _click(view: TaskView, n: int, action: str = "approve", **kw: object) -> HumanIntervention:
    d = Decision(
        stable_id("click", n),
        view.task_id,
        action,  # type: ignore[arg-type]
        "U1",
        (30 + n) * S,
        approval_id="a1",
        actor_name=str(kw.pop("actor_name", "alice")),
        comment=kw.pop("comment", None),  # type: ignore[arg-type]
        source="slack",
    )
    return HumanIntervention(event_id=d.intervention_id, time_ns=d.time_ns, task=view, decision=d, **kw)  # type: ignore[arg-type]


def _cards(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(" ")]


def test_a_line_per_decision_and_no_card_from_a_view_not_known_here() -> None:
    sink, out = _sink()
    start = TaskStarted(event_id="s", time_ns=10 * S, task=_view())
    asyncio.run(sink.export([start]))
    # Denied, with a view that is not the task's state here (even a "newer" one).
    stale = _view(status="cancelled", seq=99)
    denied = _click(stale, 1, "cancel", outcome="denied", reason="not allowed", known=False)
    # A decision on a task this process never saw: ids only.
    bare = TaskView(task_id="elsewhere-7", trace_id="", root_span_id="", agent_id="unknown")
    remote = _click(bare, 2, "acknowledge", known=False)
    before = out.getvalue()
    for _ in range(2):  # replayed: printed once
        asyncio.run(sink.export([denied, remote]))
    new = out.getvalue()[len(before) :]
    assert _cards(new) == []  # no status card: neither view is the task's state here
    lines = new.splitlines()
    assert len(lines) == 2
    assert "🚫" in lines[0] and "[Rivet]" in lines[0] and "not allowed" in lines[0]
    assert "[task elsewhere-7]" in lines[1] and "unknown" not in lines[1]
    # An applied decision on the open task is a normal event: its status card may print.
    applied = _click(_view(status="working", seq=3), 3, comment="go \x1b[31mnow")
    asyncio.run(sink.export([applied]))
    tail = out.getvalue()[len(before) + len(new) :]
    assert any("working" in c for c in _cards(tail))
    assert "go [31mnow" in tail and "\x1b" not in tail


def test_a_persons_name_cannot_drive_the_terminal() -> None:
    sink, out = _sink()
    asyncio.run(sink.export([_click(_view(), 1, actor_name="eve\x1b[2J\x07", known=False)]))
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()


def test_results_and_the_log_tail_of_a_failed_task() -> None:
    sink, out = _sink()
    results = (ResultField("prs_opened", 3), ResultField("arr_gain_1h", 4820.0, "USD"))
    view = _view(status="error", ended_ns=40 * S, results=results)
    tail = tuple(LogLine((39 * S) + i, "WARNING", f"retrying {i}", "agent.db") for i in range(25))
    tail = (*tail, LogLine(40 * S, "ERROR", "gave up \x1b[31m", "agent.db"))
    fin = TaskFinished(event_id="f", time_ns=40 * S, task=view, outcome="error", duration_s=30.0, log_tail=tail)
    asyncio.run(sink.export([fin]))
    text = out.getvalue()
    assert "last log lines:" in text and "gave up [31m" in text and "\x1b[31m" not in text
    # Bounded: the newest lines only.
    assert "retrying 24" in text and "retrying 0" not in text
    assert "prs_opened: 3" in text
