"""The migration's session lock on a pooled connection: the pool resets
nothing at release, so when releasing the lock fails the connection is
closed, and the lock goes with its session rather than staying on a
connection the pool hands out again."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from spanvisor_postgres.db import _keep_session
from spanvisor_postgres.migrate import MIGRATION_LOCK_KEY, migrate

from .conftest import run


class _UnlockFails:
    """A pooled connection whose unlock does not get through (a timeout, a
    cancellation); every other call goes to the real connection."""

    def __init__(self, conn: Any, error: BaseException) -> None:
        self._conn = conn
        self._error = error

    async def execute(self, sql: str, *args: Any) -> Any:
        if "pg_advisory_unlock" in sql:
            raise self._error
        return await self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def _lock_is_free(url: str) -> bool:
    other = await asyncpg.connect(url)
    try:
        got = bool(await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY))
        if got:
            await other.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        return got
    finally:
        await other.close()


async def _lock_freed_soon(url: str, within_s: float = 15.0) -> bool:
    """The lock is free once the server has seen the terminated connection's
    socket close and ended its session: soon, not at once on a loaded machine
    (a replica waiting on the lock just waits that long)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await _lock_is_free(url):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.parametrize(
    "error", [asyncpg.InterfaceError("the unlock timed out"), asyncio.CancelledError()], ids=["error", "cancelled"]
)
def test_a_failed_unlock_closes_the_pooled_connection_and_frees_the_lock(pg_server: Any, error: BaseException) -> None:
    url = pg_server.database(migrated=False)

    async def main() -> None:
        # One connection, reset as the plugin's pool resets it (not at all).
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1, reset=_keep_session)
        try:
            async with pool.acquire() as conn:
                if isinstance(error, Exception):
                    assert await migrate(_UnlockFails(conn, error))  # the migration went through
                else:
                    with pytest.raises(asyncio.CancelledError):
                        await migrate(_UnlockFails(conn, error))
            assert await _lock_freed_soon(url)
            async with pool.acquire() as conn:  # the pool opens a new connection
                assert await migrate(conn) == []
        finally:
            await pool.close()

    run(main)
