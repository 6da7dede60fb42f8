"""`spanvisor serve` restarted on its data dir posts no Slack parent twice.

Without PostgreSQL, serve keeps its state store in the data dir, and a
graceful stop marks the span journal delivered. A few tasks are sent with
the real OTLP exporter, serve is stopped (SIGTERM, or SIGKILL) and started
again, nothing more is sent: one ``chat.postMessage`` parent per task.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from agent_traces import task_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from serve_proc import FakeSlackThread, ServeProcess, slack_env
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

N_TASKS = 3


def _send_tasks(serve: ServeProcess, seed: int) -> list[str]:
    spans = task_spans(N_TASKS, seed=seed, checkpoints=2, plain_per_step=1)
    exporter = HttpExporter(endpoint=serve.url, timeout=20)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    return [f"T{seed}-{i}" for i in range(N_TASKS)]


def _settled_parents(data_dir: Path) -> int:
    """Parents whose (channel, ts) the local state store holds."""
    path = data_dir / "state.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM state WHERE namespace = 'slack.parent' AND value IS NOT NULL"
        ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


@pytest.fixture
def slack() -> FakeSlackThread:
    s = FakeSlackThread()
    yield s  # type: ignore[misc]
    s.close()


def _env(tmp_path: Path, slack: FakeSlackThread) -> dict[str, str]:
    # Slack and the console only: no PostgreSQL, so the state store is the local one.
    return slack_env(tmp_path, slack.base_url, SPANVISOR_SINKS="slack,console")


def test_graceful_restart_resends_nothing(tmp_path: Path, slack: FakeSlackThread) -> None:
    serve = ServeProcess(tmp_path, _env(tmp_path, slack))
    try:
        tasks = _send_tasks(serve, seed=21)
        wait_until(lambda: len(slack.parents()) == N_TASKS, 30, "one parent per task")
        assert serve.terminate() == 0
        first = serve.log_text()
        assert "marked delivered through entry" in first, first
        assert all(t in first for t in tasks), "the console printed the tasks"
        calls_before = slack.chat_calls()

        serve.start()
        second = serve.log_text()
        assert re.search(r"rebuilt open tasks from \d+ delivered spans", second), second
        assert serve.terminate() == 0
        second = serve.log_text()
        assert "replayed" not in second, second
        # Nothing at all went to Slack or the console the second time.
        assert slack.chat_calls() == calls_before
        assert not any(t in second for t in tasks), second
        assert slack.parent_posts() == N_TASKS
        assert len(slack.parents()) == N_TASKS
    finally:
        serve.stop()


def test_sigkill_restart_posts_no_second_parent(tmp_path: Path, slack: FakeSlackThread) -> None:
    serve = ServeProcess(tmp_path, _env(tmp_path, slack))
    try:
        _send_tasks(serve, seed=22)
        # Killed only once every parent's (channel, ts) is stored: a kill
        # between Slack's answer and the store's commit is the one window in
        # which a second parent is possible (docs/reference/deploy.md).
        wait_until(lambda: _settled_parents(tmp_path) == N_TASKS, 30, "every parent stored")
        serve.kill()

        serve.start()
        # No clean stop, so no delivered mark: the journal replays to the sinks.
        assert re.search(r"replayed [1-9]\d* spans", serve.log_text()), serve.log_text()
        # The drain of a graceful stop delivers whatever the replay caused.
        assert serve.terminate() == 0
        assert slack.parent_posts() == N_TASKS
        assert len(slack.parents()) == N_TASKS
    finally:
        serve.stop()
