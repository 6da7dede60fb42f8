"""Slack and PostgreSQL end on the same view the tracker finished with.

Random task trees are played on a real TracerProvider with the processor and
two real sinks: the PostgreSQL sink on a real database and the Slack sink
against the fake Slack (which speaks Slack's HTTP API and its rules). Each
task's ``agent_tasks`` row and its Slack parent must show the final view of
the stream the tracker produced, even though the sinks coalesce (Slack keeps
the highest ``seq``; the row upsert follows ``seq``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanvisor.config import Config
from spanvisor.display.task import progress_of
from spanvisor.events import TaskFinished, TaskView
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.testing import InMemorySink
from spanvisor_postgres import PostgresSink
from spanvisor_slack import SlackSink
from spanvisor_slack.blocks import parent_payload
from tests.fakes.slack_api import FakeSlack

from ._invariants import check_stream
from ._paths import _Ids, clean_specs, play
from ._strategies import traces
from ._trees import SpanSpec

pytestmark = pytest.mark.slow


class _SlackThread:
    """The fake Slack on a loop of its own (the sink calls it from the pipeline's)."""

    def __init__(self) -> None:
        self.fake = FakeSlack(channel_rate=1000, channel_burst=1000)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.base_url = self._run(self.fake.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def parents(self) -> list[Any]:
        async def read() -> list[Any]:
            return list(self.fake.parents())

        return list(self._run(read()))

    def close(self) -> None:
        self._run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def slack() -> Iterator[_SlackThread]:
    s = _SlackThread()
    yield s
    s.close()


def _config(db_url: str, slack_url: str, tmp: str) -> Config:
    return Config.load(
        env={
            "SPANVISOR_DATABASE_URL": db_url,
            "SPANVISOR_DATA_DIR": tmp,
            "SLACK_BOT_TOKEN": "xoxb-final-view",
            "SPANVISOR_SLACK_CHANNEL": "#agents",
            "SPANVISOR_SLACK_BASE_URL": slack_url,
            "SPANVISOR_SLACK_UPDATE_INTERVAL": "50ms",
            "SPANVISOR_SLACK_CHANNEL_INTERVAL": "5ms",
        }
    ).with_values(shutdown_timeout_s=10.0)


async def _rows(db_url: str) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT * FROM agent_tasks")
    finally:
        await conn.close()
    return {r["task_id"]: dict(r) for r in rows}


def _fields(payload: dict[str, Any]) -> list[str]:
    """The parent's field texts, without the elapsed time (it moves with the clock)."""
    out = []
    for block in [*payload.get("blocks", []), *(b for a in payload.get("attachments", []) for b in a["blocks"])]:
        for f in block.get("fields", []) or []:
            if not f["text"].startswith("*Elapsed*"):
                out.append(f["text"])
    return out


def _row_matches(row: dict[str, Any], v: TaskView) -> None:
    got = (row["status"], row["progress"], row["step"], row["message"], row["context_tokens"], row["seq"])
    # The database shows a completed task done, as the console and Slack do (display.task.progress_of).
    assert got == (v.status, progress_of(v), v.step, v.message, v.context_tokens, v.seq), row["task_id"]
    assert (row["input_tokens"], row["output_tokens"], row["model"]) == (v.input_tokens, v.output_tokens, v.model)
    assert json.loads(row["steps"]) == list(v.steps)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs=traces(max_traces=2, max_children=5, clean_root_updates=True))
def test_slack_and_postgres_end_on_the_trackers_final_view(
    specs: list[SpanSpec], pg_server: Any, slack: _SlackThread, tmp_path_factory: pytest.TempPathFactory
) -> None:
    specs = clean_specs(specs)
    db_url = pg_server.database()
    memory = InMemorySink()
    config = _config(db_url, slack.base_url, str(tmp_path_factory.mktemp("final")))
    slack_sink = SlackSink()
    processor = SpanvisorSpanProcessor(sinks=[memory, PostgresSink(), slack_sink], config=config)
    ids = _Ids()
    provider = TracerProvider(id_generator=ids, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    before = {p.ts for p in slack.parents()}
    try:
        play(specs, provider, ids)
        assert processor.force_flush(30_000)
        look = slack_sink.deliverer.look
    finally:
        processor.pipeline.shutdown(15.0)
    check_stream(memory.events, all_finished=True)
    finals = {e.task_id: e.task for e in memory.events if isinstance(e, TaskFinished)}
    rows = asyncio.run(_rows(db_url))
    assert set(rows) == set(finals)
    for task_id, view in finals.items():
        _row_matches(rows[task_id], view)
    deadline = time.monotonic() + 20
    while True:
        parents = {
            (p.metadata or {}).get("event_payload", {}).get("task_id"): p for p in slack.parents() if p.ts not in before
        }
        want = {tid: parent_payload(v, look, 0) for tid, v in finals.items()}
        shown = {
            tid: (p.text, _fields({"blocks": p.blocks, "attachments": p.attachments})) for tid, p in parents.items()
        }
        expected = {tid: (w["text"], _fields(w)) for tid, w in want.items()}
        if shown == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert shown == expected
