"""Retention: old tasks go with all their rows, in bounded batches; recent ones stay."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from spanvisor_postgres import PostgresSink
from spanvisor_postgres.queries import prune

from ._events import T0, task_stream
from .conftest import fetch, make_config, make_ctx, run

COUNTS = ("agent_tasks", "agent_checkpoints", "task_artifacts", "delivery_state")


async def counts(url: str) -> dict[str, int]:
    return {t: len(await fetch(url, f"SELECT 1 FROM {t}")) for t in COUNTS}


def test_prune_older_than(db_url: str, tmp_path: Path) -> None:
    now_offset = (time.time_ns() - T0) // 1_000_000_000  # task numbers are seconds after T0
    old = [e for n in range(5) for e in task_stream(n, checkpoints=3)]
    recent = task_stream(int(now_offset) - 60, checkpoints=3, agent="fresh")

    async def main() -> None:
        import asyncpg

        sink = PostgresSink()
        ctx = make_ctx(make_config(tmp_path, db_url))
        await sink.start(ctx)
        await sink.export(old + recent)
        from spanvisor_postgres.statestore import PostgresStateStore

        store = await PostgresStateStore.open(ctx.config, ctx.shared)
        await store.put("slack", old[0].task_id, {"ts": "1"}, "me")
        await store.close()
        await sink.shutdown(5)
        assert await counts(db_url) == {
            "agent_tasks": 6,
            "agent_checkpoints": 24,
            "task_artifacts": 6,
            "delivery_state": 1,
        }
        pool: Any = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:
            assert await prune(pool, 86400.0, batch=2) == 5
            assert await prune(pool, 86400.0, batch=2) == 0
        finally:
            await pool.close()
        assert await counts(db_url) == {
            "agent_tasks": 1,
            "agent_checkpoints": 4,
            "task_artifacts": 1,
            "delivery_state": 0,
        }
        [task] = await fetch(db_url, "SELECT agent_id FROM agent_tasks")
        assert task["agent_id"] == "fresh"

    run(main)
