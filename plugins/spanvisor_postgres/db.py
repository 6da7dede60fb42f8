"""The one database handle a pipeline shares: URL, embedded server, pool, migrations.

The sink and the state store both call :func:`open_shared` with the
pipeline's ``shared`` dict; whichever comes first creates the handle, the
other reuses it, and the last :func:`release_shared` closes the pool and
lets the embedded server go. The pool is created lazily and re-created
after a failure, so a database that is down at start is not an error:
callers get :class:`TransientDbError` until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from spanvisor.config import mask

from .embedded import EmbeddedPostgres, EmbeddedUnavailable
from .migrate import migrate
from .writer import TransientDbError

if TYPE_CHECKING:
    from spanvisor.config import Config

log = logging.getLogger("spanvisor.postgres")

DB_KEY = "postgres.db"
POOL_KEY = "postgres.pool"
_LOCK_KEY = "postgres.lock"


def embedded_root(config: Config) -> Path:
    return config.data_dir / "postgres"


def uses_embedded(config: Config) -> bool:
    return not config.get("database_url") and bool(config.get("embedded_db"))


class Database:
    def __init__(self, config: Config, *, embedded: bool | None = None, auto_migrate: bool = True) -> None:
        self.config = config
        self.url: str | None = config.get("database_url")
        self.embedded: EmbeddedPostgres | None = None
        if self.url is None and (embedded if embedded is not None else uses_embedded(config)):
            self.embedded = EmbeddedPostgres(embedded_root(config))
        self.pool: Any = None
        self.users = 0
        # False for `spanvisor migrate`, which reports what it applies itself.
        self.migrated = not auto_migrate
        self._lock = asyncio.Lock()
        self._holding_embedded = False

    @property
    def shown_url(self) -> str:
        if self.url:
            return mask(self.url)
        return f"embedded PostgreSQL in {self.embedded.root}" if self.embedded else "no database configured"

    async def get_pool(self) -> Any:
        """The pool, migrated; :class:`TransientDbError` when the database is away."""
        if self.pool is not None and self.migrated:
            return self.pool
        async with self._lock:
            if self.pool is None:
                await self._create_pool()
            if not self.migrated:
                try:
                    async with self.pool.acquire() as conn:
                        await migrate(conn)
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise TransientDbError(f"cannot migrate {self.shown_url}: {exc}") from exc
                self.migrated = True
        return self.pool

    async def _create_pool(self) -> None:
        if self.url is None:
            if self.embedded is None:
                raise TransientDbError(
                    "no database: set SPANVISOR_DATABASE_URL, or SPANVISOR_EMBEDDED_DB=true for the embedded one"
                )
            try:
                self.url = await asyncio.to_thread(self.embedded.acquire)
            except (EmbeddedUnavailable, OSError) as exc:
                raise TransientDbError(str(exc)) from exc
            self._holding_embedded = True
        timeout = float(self.config.get("db_command_timeout") or 10.0)
        # min_size=0: creating the pool connects nowhere, and a pool whose
        # connections all broke simply opens new ones on the next acquire.
        self.pool = await asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=max(1, int(self.config.get("db_pool_size") or 4)),
            command_timeout=timeout,
            timeout=min(timeout, 10.0),
            max_inactive_connection_lifetime=60.0,
            reset=_keep_session,
        )

    async def close(self, timeout_s: float = 5.0) -> None:
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), timeout_s)
            except (TimeoutError, Exception):
                self.pool.terminate()
            self.pool = None
        if self.embedded is not None and self._holding_embedded:
            self._holding_embedded = False
            try:
                await asyncio.to_thread(self.embedded.release)
            except Exception as exc:  # stopping is best effort; the next run adopts it
                log.warning("could not stop the embedded PostgreSQL: %s", exc)


async def _keep_session(conn: Any) -> None:
    """A released connection's reset: nothing beyond asyncpg's own (an open
    transaction rolled back, listener callbacks dropped). asyncpg's default
    also sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``,
    a round trip at every release on the pipeline's loop, for session state
    this plugin never leaves on a pooled connection: its advisory locks are
    transaction-scoped (the migration's session lock is released in its own
    ``finally``), it declares no cursors outside transactions, sets no
    session variables, and listens on connections of its own."""
    return None


async def open_shared(config: Config, shared: dict[str, Any]) -> Database:
    lock = shared.setdefault(_LOCK_KEY, asyncio.Lock())
    async with lock:
        db = shared.get(DB_KEY)
        if db is None:
            db = shared[DB_KEY] = Database(config)
        db.users += 1
        return db  # type: ignore[no-any-return]


async def shared_pool(db: Database, shared: dict[str, Any]) -> Any:
    pool = await db.get_pool()
    shared[POOL_KEY] = pool
    return pool


async def release_shared(db: Database, shared: dict[str, Any], timeout_s: float = 5.0) -> None:
    lock = shared.setdefault(_LOCK_KEY, asyncio.Lock())
    async with lock:
        db.users -= 1
        if db.users > 0:
            return
        shared.pop(DB_KEY, None)
        shared.pop(POOL_KEY, None)
    await db.close(timeout_s)


async def close_listener(listener: Any) -> None:
    """Close a LISTEN connection of its own (the state store's, the event
    feed's); one that will not close in time is terminated."""
    if listener is None:
        return
    try:
        await listener.close(timeout=2.0)
    except Exception:  # closing anyway
        listener.terminate()
