"""A task id reused by a second run keeps both runs' rows: event ids carry
the run, so ``ON CONFLICT (event_id) DO NOTHING`` drops none of run 2's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spanvisor.config import Config
from spanvisor.events import TaskFinished
from spanvisor.spans import conventions as cv
from spanvisor.testing import InMemorySink
from tests.core._sdk import Agent

from .conftest import fetch, run
from .test_sink_basic import export_all


def test_two_runs_of_one_task_id_keep_both_context_warning_rows(pg_server: Any, tmp_path: Path) -> None:
    memory = InMemorySink()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path / "a")}, extra=()).with_values(shutdown_timeout_s=2.0)
    agent = Agent([memory], config)
    try:
        for _ in range(2):
            attrs = {cv.TASK_ID: "job-5", cv.TASK_NAME: "job", cv.CONTEXT_LIMIT: 1000, cv.CONTEXT_TOKENS: 800}
            with agent.tracer.start_as_current_span("job", attributes=attrs):
                pass
        assert agent.flush()
        assert len(memory.of_type(TaskFinished)) == 2
    finally:
        agent.close()
    url = pg_server.database()

    async def main() -> None:
        await export_all(url, tmp_path, [list(memory.events)])
        rows = await fetch(url, "SELECT event_id FROM agent_checkpoints WHERE kind = 'context_warning'")
        assert len(rows) == 2, rows

    run(main)


def test_the_task_row_follows_the_newest_run_in_one_batch_or_two(pg_server: Any, tmp_path: Path) -> None:
    memory = InMemorySink()
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path / "a")}, extra=()).with_values(shutdown_timeout_s=2.0)
    agent = Agent([memory], config)
    try:
        try:
            with agent.tracer.start_as_current_span("job", attributes={cv.TASK_ID: "job-6", cv.TASK_NAME: "job"}):
                raise RuntimeError("run 1 fails")
        except RuntimeError:
            pass
        with agent.tracer.start_as_current_span("job", attributes={cv.TASK_ID: "job-6", cv.TASK_NAME: "job"}):
            pass
        assert agent.flush()
    finally:
        agent.close()
    events = list(memory.events)
    ends = [e for e in events if isinstance(e, TaskFinished)]
    assert [e.outcome for e in ends] == ["error", "complete"]
    split = events.index(ends[0]) + 1

    for n, batches in enumerate(([events], [events[:split], events[split:]], [events[split:], events[:split]])):
        url = pg_server.database()

        async def main(url: str = url, batches: list[list[Any]] = batches, n: int = n) -> None:
            await export_all(url, tmp_path / f"b{n}", batches)
            [row] = await fetch(url, "SELECT status, root_span_id, error_type, ended_at FROM agent_tasks")
            assert (row["status"], row["root_span_id"], row["error_type"]) == (
                "complete",
                ends[1].task.root_span_id,
                None,
            ), (n, dict(row))

        run(main)
