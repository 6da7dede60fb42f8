"""`spanvisor task`: model-call rows of the timeline show the call, not a bare status.

A real agent (the OTel SDK and the in-process processor) writes through the
real PostgreSQL sink; the timeline is read back through ``spanvisor.cli.main``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from spanvisor.events import Checkpoint, stable_id
from spanvisor.spans import conventions as cv
from spanvisor_postgres import PostgresSink
from tests.core._late import late_call_events

from ._events import task_stream
from .conftest import make_config, make_ctx, run

SONNET = "claude-sonnet-4-20250514"
EMBED = "text-embedding-3-small"


def _agent_task(config: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Status, StatusCode

    from spanvisor.otel.processor import SpanvisorSpanProcessor

    processor = SpanvisorSpanProcessor(sinks=[PostgresSink()], config=config)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    try:
        attrs = {cv.TASK_ID: "report-1", cv.TASK_NAME: "Quarterly report", cv.AGENT_ID: "rivet"}
        with tracer.start_as_current_span("report", attributes=attrs) as root:
            root.add_event(cv.EVENT_CHECKPOINT, {"message": "planning", cv.PROGRESS: 10})
            for tokens_in in (12_000, 30_000):
                with tracer.start_as_current_span(f"chat {SONNET}", attributes={cv.GEN_AI_OPERATION: "chat"}) as c:
                    c.set_attributes(
                        {cv.GEN_AI_REQUEST_MODEL: SONNET, cv.GEN_AI_INPUT: tokens_in, cv.GEN_AI_OUTPUT: 800}
                    )
            tool = {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "fetch_sales"}
            with tracer.start_as_current_span("execute_tool fetch_sales", attributes=tool):
                pass
            with tracer.start_as_current_span("execute_tool fetch_sales", attributes=tool) as failed:
                failed.set_status(Status(StatusCode.ERROR, "warehouse timeout"))
            root.add_event(cv.EVENT_CHECKPOINT, {"message": "writing", cv.PROGRESS: 80})
        assert processor.force_flush(20_000)
    finally:
        processor.pipeline.shutdown(5.0)


@pytest.fixture(scope="module")
def agent_url(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    url: str = pg_server.database()
    _agent_task(make_config(tmp_path_factory.mktemp("agent"), url).with_values(shutdown_timeout_s=5.0))
    return url


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))

    def call(url: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("SPANVISOR_DATABASE_URL", url)
        code = main(list(argv))
        return code, capsys.readouterr().out

    return call


def _rows(out: str) -> list[tuple[str, str]]:
    """(kind, detail) of each timeline row of ``spanvisor task``."""
    table = out.split("\n\n")[1].splitlines()
    col, det = table[0].index("KIND"), table[0].index("DETAIL")
    return [(line[col:det].strip(), line[det:].strip()) for line in table[2:]]


def test_model_calls_show_their_tokens_and_the_context(agent_url: str, cli: Any) -> None:
    code, out = cli(agent_url, "task", "report-1")
    assert code == 0
    rows = _rows(out)
    calls = [detail for kind, detail in rows if kind == "model_call"]
    # Before: two rows reading "working", indistinguishable from a checkpoint.
    assert len(calls) == 2
    assert "12,000 in / 800 out tokens" in calls[0] and "30,000 in / 800 out tokens" in calls[1]
    assert "context 30,800 / 200,000 (15%)" in calls[1]
    assert [k for k, _ in rows].count("checkpoint") == 2  # the agent's own two checkpoints
    assert next(d for k, d in rows if k == "checkpoint").endswith("planning")

    code, out = cli(agent_url, "task", "report-1", "--json")
    doc = json.loads(out)
    calls_json = [e for e in doc["timeline"] if e["kind"] == "model_call"]
    assert [(e["input_tokens"], e["output_tokens"]) for e in calls_json] == [(12_000, 800), (30_000, 800)]


def test_tool_calls_show_their_name_duration_and_failure(agent_url: str, cli: Any) -> None:
    _, out = cli(agent_url, "task", "report-1")
    tools = [detail for kind, detail in _rows(out) if kind == "tool_call"]
    assert len(tools) == 2
    assert tools[0].startswith("fetch_sales (") and tools[0].endswith(" ms)")
    assert tools[1].endswith("· failed: warehouse timeout")


def test_model_calls_name_their_model(agent_url: str, cli: Any) -> None:
    _, out = cli(agent_url, "task", "report-1")
    calls = [detail for kind, detail in _rows(out) if kind == "model_call"]
    assert calls and all(d.startswith(SONNET) for d in calls)


def test_the_calls_own_model_and_tokens_when_the_row_names_them(
    db_url: str, cli: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A row carrying the call's facts (the tracker's attributes) shows them,
    an embeddings call under a Sonnet conversation included."""
    events = task_stream(7, checkpoints=2, agent="vera")
    cp = events[2]
    assert isinstance(cp, Checkpoint)
    embed = dataclasses.replace(
        cp,
        event_id=stable_id(cp.event_id, "embed"),
        time_ns=cp.time_ns + 1,
        source="model_call",
        changed=("tokens",),
        attributes={"model": EMBED, "operation": "embeddings", "input_tokens": 300, "output_tokens": 0},
    )

    async def load() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path_factory.mktemp("named"), db_url)))
        await sink.export([*events[:3], embed, *events[3:]])
        await sink.shutdown(5)

    run(load)
    code, out = cli(db_url, "task", cp.task.task_id)
    assert code == 0
    calls = [detail for kind, detail in _rows(out) if kind == "model_call"]
    assert calls == [f"{EMBED} · 300 in / 0 out tokens · context 2,000 / 200,000 (1%)"]


def test_a_correction_after_the_end_reads_as_what_was_added(
    db_url: str, cli: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A TaskCorrected (the late-span rule) through the real sink: a timeline
    row of kind corrected after the finish, saying what the late call added;
    the task's totals are the corrected ones."""
    events = late_call_events("T-cli-late", artifact=True)

    async def load() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path_factory.mktemp("corrected"), db_url)))
        await sink.export(events)
        await sink.shutdown(5)

    run(load)
    code, out = cli(db_url, "task", "T-cli-late")
    assert code == 0
    rows = _rows(out)
    [detail] = [d for k, d in rows if k == "corrected"]
    assert detail.startswith("corrected: +5,000 in / +10 out tokens")
    assert detail.endswith("+1 artifact from work that ended after the task")
    code, out = cli(db_url, "task", "T-cli-late", "--json")
    doc = json.loads(out)
    [entry] = [e for e in doc["timeline"] if e["kind"] == "corrected"]
    assert (entry["added_input_tokens"], entry["added_output_tokens"]) == (5_000, 10)
    assert doc["task"]["input_tokens"] == 6_000
