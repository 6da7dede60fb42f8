"""Postgres tests: the session server from tests/conftest_pg.py, a fresh database per module."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from spanvisor.config import Config
from spanvisor.sink import SinkContext
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor.stats import PipelineStats
from tests.conftest_pg import PgServer

T = TypeVar("T")


@pytest.fixture(scope="module")
def db_url(pg_server: PgServer) -> str:
    """A migrated database for this module alone."""
    return pg_server.database()


def make_config(data_dir: Path, url: str | None, **values: Any) -> Config:
    from spanvisor_postgres.settings import SETTINGS

    cfg = Config.load(env={}, extra=SETTINGS)
    return cfg.with_values(data_dir=str(data_dir), database_url=url, **values)


def make_ctx(config: Config) -> SinkContext:
    return SinkContext(config=config, state_store=InMemoryStateStore(), stats=PipelineStats())


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


async def fetch(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
