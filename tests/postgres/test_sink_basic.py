"""The sink against a real PostgreSQL: rows, idempotency, forward-only upserts."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

from spanvisor.events import DiffUpdated
from spanvisor.sink import SinkResult
from spanvisor_postgres import PostgresSink

from ._events import task_stream
from .conftest import fetch, make_config, make_ctx, run

SNAPSHOT = {
    "agent_tasks": "SELECT * FROM agent_tasks ORDER BY task_id",
    "agent_checkpoints": "SELECT * FROM agent_checkpoints ORDER BY event_id",
    "task_artifacts": "SELECT * FROM task_artifacts ORDER BY event_id",
    "quarantine": "SELECT event_id, reason FROM quarantine ORDER BY event_id",
}


async def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in await fetch(url, sql)] for name, sql in SNAPSHOT.items()}


async def export_all(url: str, data_dir: Path, batches: list[list[Any]], method: str = "copy") -> None:
    sink = PostgresSink(write_method=method)  # type: ignore[arg-type]
    await sink.start(make_ctx(make_config(data_dir, url)))
    try:
        for batch in batches:
            assert await sink.export(batch) is SinkResult.SUCCESS
        assert await sink.force_flush(20)
    finally:
        await sink.shutdown(5)


def test_stream_lands_in_every_table(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = task_stream(1, checkpoints=20) + task_stream(2, agent="vera", outcome="error")

    async def main() -> None:
        await export_all(url, tmp_path, [events[:7], events[7:]])
        tasks = await fetch(url, "SELECT * FROM agent_tasks ORDER BY agent_id")
        assert [(t["agent_id"], t["status"], t["progress"]) for t in tasks] == [
            ("rivet", "complete", 100.0),
            ("vera", "error", 100.0),
        ]
        vera = tasks[1]
        assert (vera["repo"], vera["branch"]) == ("acme/plant", "fix/gasket")
        assert vera["pull_request"] == "https://git.example/acme/plant/pull/9"
        assert vera["error_type"] == "ValueError" and vera["error_message"] == "bad gasket"
        assert vera["ended_at"] is not None and vera["duration_s"] > 0
        assert vera["input_tokens"] == 2500
        kinds = await fetch(url, "SELECT kind, count(*) AS n FROM agent_checkpoints GROUP BY kind ORDER BY kind")
        assert [(k["kind"], k["n"]) for k in kinds] == [("checkpoint", 25), ("context_warning", 2)]
        assert len(await fetch(url, "SELECT 1 FROM task_artifacts")) == 2

    run(main)


def test_replayed_three_times_gives_identical_rows(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = [e for n in range(5) for e in task_stream(n, checkpoints=30)]

    async def main() -> None:
        await export_all(url, tmp_path, [events[i : i + 50] for i in range(0, len(events), 50)])
        first = await snapshot(url)
        for method in ("copy", "executemany"):
            await export_all(url, tmp_path, [events[i : i + 17] for i in range(0, len(events), 17)], method)
            assert await snapshot(url) == first
        assert len(first["agent_checkpoints"]) == 5 * 31

    run(main)


def test_out_of_order_replays_never_move_a_task_backwards(pg_server: Any, tmp_path: Path) -> None:
    url, url2 = pg_server.database(), pg_server.database()
    events = task_stream(7, checkpoints=10)
    rng = random.Random(7)

    async def main() -> None:
        await export_all(url, tmp_path, [events])
        final = await snapshot(url)
        for _ in range(3):
            shuffled = events[:]
            rng.shuffle(shuffled)
            # One event per batch: every late event meets the finished row.
            await export_all(url, tmp_path, [[e] for e in shuffled])
            assert await snapshot(url) == final
        # And a fresh database fed in reverse ends in the same state.
        await export_all(url2, tmp_path, [[e] for e in reversed(events)])
        again = await snapshot(url2)
        assert again == final

    run(main)


def test_open_task_then_late_older_checkpoint(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = task_stream(3, checkpoints=6, finish=False)

    async def main() -> None:
        await export_all(url, tmp_path, [events])
        [row] = await fetch(url, "SELECT status, progress, message, ended_at FROM agent_tasks")
        # A replay of an early checkpoint arrives late: nothing moves back.
        await export_all(url, tmp_path, [[events[1]], [events[0]]])
        assert await fetch(url, "SELECT status, progress, message, ended_at FROM agent_tasks") == [row]
        assert row["status"] == "context_warning" and row["ended_at"] is None

    run(main)


def test_a_diff_is_a_timeline_row_of_its_digest_not_its_text(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    events = task_stream(3, checkpoints=2, finish=False)
    last = events[-1]
    text = "diff --git a/a.py b/a.py\n+secret-free change\n"
    v = dataclasses.replace(last.task, seq=last.task.seq + 1, updated_ns=last.time_ns + 1)
    diff = DiffUpdated(
        event_id="diff-1", time_ns=last.time_ns + 1, task=v, diff=text, files=1, clipped=False, digest="d" * 64
    )

    async def main() -> None:
        await export_all(url, tmp_path, [[*events, diff], [diff]])  # the replay is one row
        [row] = await fetch(url, "SELECT kind, attributes, task_id FROM agent_checkpoints WHERE kind = 'diff'")
        facts = json.loads(row["attributes"]) if isinstance(row["attributes"], str) else row["attributes"]
        assert facts == {"digest": "d" * 64, "chars": len(text), "files": 1, "clipped": False}
        assert row["task_id"] == v.task_id

    run(main)
