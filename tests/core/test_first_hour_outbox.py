"""Held events belong to their destination (issue 66).

An agent whose database could not be reached kept its events in the
outbox; a later ``spanvisor serve`` on the embedded database with the same
data directory replayed them there. Each destination now has an outbox of
its own: events held for database A are kept (and said once in the log)
while B is configured, and delivered when A is configured again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spanvisor.config import Config
from spanvisor.pipeline.outbox import Outbox
from spanvisor.pipeline.outbox_destination import database_destination
from spanvisor_postgres.sink import outbox_destination

A = "postgresql://agent:s3cret@db-a.internal:5433/audit"


def _config(tmp_path: Path, **env: str) -> Config:
    return Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path), "SPANVISOR_EMBEDDED_DB": "true", **env})


async def _open(tmp_path: Path, config: Config) -> Outbox:
    return await Outbox.open(tmp_path / "outbox", "postgres", 1000, destination=outbox_destination(config))


def test_events_held_for_one_database_are_not_replayed_into_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database_a = _config(tmp_path, SPANVISOR_DATABASE_URL=A)
    embedded_b = _config(tmp_path)

    async def main() -> None:
        held = await _open(tmp_path, database_a)  # the agent, its database away
        await held.append([{"n": i} for i in range(3)])
        await held.close()

        with caplog.at_level(logging.WARNING, logger="spanvisor.outbox"):
            serve = await _open(tmp_path, embedded_b)  # serve on the embedded database
        assert serve.size == 0 and await serve.peek(10) == []
        assert [(h.events, h.label) for h in serve.held_elsewhere] == [
            (3, "database:postgresql://agent@db-a.internal:5433/audit")
        ]
        said = [r.getMessage() for r in caplog.records if "held for" in r.getMessage()]
        assert len(said) == 1 and "3 events held for database:postgresql://agent@db-a.internal:5433/audit" in said[0]
        assert "s3cret" not in caplog.text
        await serve.append([{"n": "b"}])  # B's own events stay B's
        await serve.close()

        again = await _open(tmp_path, database_a)  # A configured again
        assert [item["n"] for _, item in await again.peek(10)] == [0, 1, 2]
        assert [h.events for h in again.held_elsewhere] == [1]  # and B's one is now the one kept
        await again.close()

    asyncio.run(main())


def test_a_database_is_its_host_port_name_and_user_never_its_password() -> None:
    same = database_destination("postgresql://agent:other@db-a.internal:5433/audit?sslmode=require")
    assert same == database_destination(A)
    assert "s3cret" not in database_destination(A).label
    for other in (
        "postgresql://agent:s3cret@db-b.internal:5433/audit",
        "postgresql://agent:s3cret@db-a.internal:5432/audit",
        "postgresql://agent:s3cret@db-a.internal:5433/other",
        "postgresql://admin:s3cret@db-a.internal:5433/audit",
    ):
        assert database_destination(other).digest != database_destination(A).digest, other
    # libpq's defaults and query parameters.
    assert database_destination("postgresql:///audit?host=/run/pg&user=me").label == (
        "database:postgresql://me@/run/pg:5432/audit"
    )


def test_an_outbox_written_before_destinations_is_kept_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        legacy = await Outbox.open(tmp_path / "outbox", "postgres", 1000)  # no destination: the old file name
        await legacy.append([{"n": 1}])
        await legacy.close()
        with caplog.at_level(logging.WARNING, logger="spanvisor.outbox"):
            box = await _open(tmp_path, _config(tmp_path))
        assert box.size == 0
        assert [(h.events, h.label) for h in box.held_elsewhere] == [(1, "")]
        assert "a destination not recorded" in caplog.text
        await box.close()

    asyncio.run(main())


def test_deadletter_list_says_what_each_outbox_holds_and_for_whom(tmp_path: Path) -> None:
    """``spanvisor deadletter list`` names the events kept for a destination
    not configured now (its label, never the password), beside the dead
    letters; ``--sink`` narrows it."""

    async def main() -> None:
        held = await _open(tmp_path, _config(tmp_path, SPANVISOR_DATABASE_URL=A))
        await held.append([{"n": i} for i in range(4)])
        await held.close()

    asyncio.run(main())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))},
        "SPANVISOR_DATA_DIR": str(tmp_path),
    }

    def listed(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-P", "-m", "spanvisor.cli", "deadletter", "list", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done
        return done.stdout

    shown = listed()
    assert "no dead letters" in shown and "Held in outboxes" in shown, shown
    row = next(line for line in shown.splitlines() if "db-a.internal" in line)
    assert "postgres" in row and "database:postgresql://agent@db-a.internal:5433/audit" in row and " 4 " in row
    assert "s3cret" not in shown
    assert "Held in outboxes" not in listed("--sink", "webhook")
