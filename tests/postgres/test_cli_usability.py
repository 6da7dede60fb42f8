"""The audit commands without surprises: a bad --status, no database, a closed
pipe, a narrow terminal. Against a real database, through spanvisor's own entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from spanvisor_postgres.queries import STATUS_FILTERS

from .conftest import run

ROWS = 1500  # several pipe buffers of JSON lines, so `head -1` closes the pipe mid-write


@pytest.fixture(scope="module")
def many_tasks(db_url: str) -> str:
    async def seed() -> None:
        import asyncpg

        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(
                """INSERT INTO agent_tasks (task_id, trace_id, root_span_id, agent_id, task_name, status,
                     started_at, updated_at, updated_ns, last_event_id, message, input_tokens, output_tokens)
                   SELECT 'task-' || lpad(i::text, 6, '0') || '-0123456789abcdef', 't', 'r',
                          'agent-with-a-rather-long-name-' || (i % 7), 'A task name that goes on and on ' || i,
                          'working', now() - make_interval(secs => i), now(), i, 'ev',
                          'The last thing the agent said, which is long enough to need cutting ' || i,
                          i * 1000, i * 10
                   FROM generate_series(1, $1) AS i""",
                ROWS,
            )
        finally:
            await conn.close()

    run(seed)
    return db_url


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SPANVISOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("SPANVISOR_EMBEDDED_DB", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)

    def call(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def test_an_unknown_status_is_rejected_with_the_valid_ones(cli: Any, many_tasks: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", many_tasks)
    code, out, err = cli("tasks", "--status", "bogus")
    assert code == 2 and out == ""
    assert "unknown --status 'bogus'" in err
    assert all(f"'{s}'" in err for s in STATUS_FILTERS)
    assert {"running", "complete", "context_warning", "awaiting_approval"} <= set(STATUS_FILTERS)
    code, out, _ = cli("tasks", "--status", "working", "--limit", "3", "--json")
    assert code == 0 and len(out.splitlines()) == 3


def test_without_a_database_tasks_says_so_and_creates_none(cli: Any, tmp_path: Path) -> None:
    for argv in (("tasks",), ("task", "abc"), ("stats",), ("prune", "--older-than", "90d"), ("migrate",)):
        code, out, err = cli(*argv)
        assert code == 3, argv
        assert out == ""
        assert "no audit database is configured" in err
        assert "SPANVISOR_DATABASE_URL" in err
        assert "pip install 'spanvisor[embedded]'" in err and "SPANVISOR_EMBEDDED_DB=true" in err
    # Nothing was created in the data directory: no empty embedded database.
    assert not (tmp_path / "postgres").exists()


def test_tables_fit_columns_by_cutting_the_widest(cli: Any, many_tasks: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", many_tasks)
    code, wide, _ = cli("tasks", "--limit", "20")
    assert code == 0
    assert max(len(line) for line in wide.splitlines()) > 120  # not a terminal: whole rows
    for columns in (80, 100):
        monkeypatch.setenv("COLUMNS", str(columns))
        code, out, _ = cli("tasks", "--limit", "20")
        lines = out.splitlines()
        assert code == 0 and len(lines) == 22
        assert max(len(line) for line in lines) <= columns, out
        assert "…" in out
        # The narrow columns are left whole; the widest (name, message) were cut.
        assert "working" in lines[2] and "task-" in lines[2]
        monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli("stats", "--since", "1d")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80


def _pipeline(command: str, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPANVISOR_DATABASE_URL": url, "SPANVISOR_DATA_DIR": str(tmp_path)}
    spanvisor = f"{sys.executable} -m spanvisor.cli"
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command.format(spanvisor=spanvisor)}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("args", ["tasks --json --limit 5000", "tasks --limit 5000"])
def test_a_closed_pipe_ends_quietly(many_tasks: str, tmp_path: Path, args: str) -> None:
    done = _pipeline(f"{{spanvisor}} {args} | head -1", many_tasks, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 1
    if "--json" in args:
        assert json.loads(done.stdout)["task_id"].startswith("task-")
