"""Versioned SQL migrations, applied under an advisory lock.

Files ``migrations/NNNN_name.sql`` ship as package data and are applied in
order, each in its own transaction with its row in ``schema_migrations``.
``pg_advisory_lock`` makes replicas that start together wait for each other
instead of racing; the one that gets the lock second finds nothing to do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

log = logging.getLogger("spanvisor.postgres")

# An arbitrary constant naming "spanvisor schema migrations" among advisory locks.
MIGRATION_LOCK_KEY = 0x5350_414E_5649_5352 & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("spanvisor_postgres").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: Any) -> list[str]:
    """Apply pending migrations on ``conn``; returns the names applied (empty when current)."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {r["version"]: r["checksum"] for r in rows}
        for m in migrations():
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    log.warning("migration %04d_%s differs from the one applied to this database", m.version, m.name)
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(f"{m.version:04d}_{m.name}")
            log.info("applied migration %04d_%s", m.version, m.name)
    finally:
        await _unlock(conn)
    return applied_now


async def _unlock(conn: Any) -> None:
    """The migration's session lock released. Should that fail (a timeout, a
    cancellation, a connection gone bad) the connection is terminated, which
    ends its session and the lock with it: the pool resets nothing at release
    (``db._keep_session``), so a pooled connection would otherwise keep the
    lock and every other replica's migration would wait on it for good. The
    migration's own outcome stands; only a cancellation goes on up."""
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    except BaseException as exc:
        conn.terminate()
        if not isinstance(exc, Exception):
            raise
        log.warning("releasing the migration lock failed (%s); its connection was closed instead", exc)
