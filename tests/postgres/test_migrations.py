"""Migrations: fresh, re-run as a no-op, and two processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import spanvisor_postgres
from spanvisor_postgres.migrate import migrate, migrations

from .conftest import fetch, run

# The newest migration's number: tests stay right as migrations are added.
LATEST = len(list((Path(spanvisor_postgres.__file__).parent / "migrations").glob("[0-9]*.sql")))

TABLES = {
    "agent_tasks",
    "agent_checkpoints",
    "task_artifacts",
    "human_interventions",
    "human_interventions_removed",  # the decision log's removed links (docs/design/audit.md)
    "decision_chain_checkpoints",  # the decision log's chain heads, checkpointed (docs/design/audit.md)
    "decision_prunes",  # what prune removed from the decision log, proven (docs/design/audit.md)
    "decision_signatures",  # serve's signatures of the decision rows (docs/design/audit.md)
    "task_logs",
    "task_aliases",  # a renamed task's former id (migration 0019, plugins/spanvisor_postgres/renames.py)
    "delivery_state",
    "quarantine",
    "schema_migrations",
    "stream_events",  # the event stream's shared feed (docs/reference/events.md)
    "stream_meta",
}


async def tables(url: str) -> set[str]:
    rows = await fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


def test_fresh_then_rerun_is_a_no_op(pg_server: Any) -> None:
    url = pg_server.database(migrated=False)

    async def main() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            assert await migrate(conn) == [f"{m.version:04d}_{m.name}" for m in migrations()]
            assert await tables(url) == TABLES
            before = await fetch(url, "SELECT version, checksum, applied_at FROM schema_migrations")
            assert await migrate(conn) == []
            assert await fetch(url, "SELECT version, checksum, applied_at FROM schema_migrations") == before
        finally:
            await conn.close()

    run(main)


def test_two_processes_migrate_at_once(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database(migrated=False)
    env = dict(os.environ, SPANVISOR_DATABASE_URL=url, SPANVISOR_DATA_DIR=str(tmp_path))
    cmd = [sys.executable, "-c", "import sys; from spanvisor.cli.main import main; sys.exit(main(['migrate']))"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # One of them applied the schema, the other found it current.
    said = sorted(out.strip() for out, _ in outs)
    assert said[0].startswith("applied 0001_audit_schema"), said
    assert said[1] == f"schema is current (version {LATEST})", said

    async def check() -> None:
        assert await tables(url) == TABLES
        assert len(await fetch(url, "SELECT * FROM schema_migrations")) == len(migrations())

    run(check)
