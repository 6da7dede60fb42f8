"""Rows of one bench_e2e run so far, counted in PostgreSQL."""

from __future__ import annotations

import asyncio


class Counter:
    """Rows of one run so far, over one kept connection (task ids of a run
    share a range: ``r<request:08d>t<task:03d>``, see ``_payloads``)."""

    def __init__(self, url: str, first: int, last: int) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(url))
        self.lo, self.hi = f"r{first:08d}", f"r{last:08d}"

    def now(self) -> tuple[int, int]:
        async def both() -> tuple[int, int]:
            rows = await self.conn.fetchval(
                "SELECT count(*) FROM agent_checkpoints WHERE task_id >= $1 AND task_id < $2", self.lo, self.hi
            )
            done = await self.conn.fetchval(
                "SELECT count(*) FROM agent_tasks WHERE task_id >= $1 AND task_id < $2 AND ended_at IS NOT NULL",
                self.lo,
                self.hi,
            )
            return int(rows), int(done)

        return self.loop.run_until_complete(both())

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()
