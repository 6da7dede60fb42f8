"""The query CLI against a real database, through spanvisor's own entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import spanvisor_postgres
from spanvisor.cli.main import main
from spanvisor_postgres import PostgresSink

from ._events import task_stream
from .conftest import make_config, make_ctx, run

# The newest migration's number: tests stay right as migrations are added.
LATEST = len(list((Path(spanvisor_postgres.__file__).parent / "migrations").glob("[0-9]*.sql")))


@pytest.fixture(scope="module")
def loaded_url(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    events = (
        task_stream(1, checkpoints=3, agent="rivet")
        + task_stream(2, checkpoints=2, agent="rivet", outcome="error")
        + task_stream(3, checkpoints=4, agent="vera", finish=False)
    )

    async def load() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path_factory.mktemp("cli"), db_url)))
        await sink.export(events)
        await sink.shutdown(5)

    run(load)
    return db_url


@pytest.fixture
def cli(loaded_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", loaded_url)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def test_tasks_table_and_filters(cli: Any) -> None:
    code, out, _ = cli("tasks")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "TASK",
        "AGENT",
        "STATUS",
        "PROGRESS",
        "STARTED",
        "DURATION",
        "TOKENS",
        "IN/OUT",
        "NAME",
        "LAST",
        "MESSAGE",
    ]
    assert set(lines[1]) <= {"─", " "}
    assert len(lines) == 5  # header, rule, three tasks, newest first
    assert "vera" in lines[2] and "context_warning" in lines[2]
    assert "error" in lines[3] and "bad gasket" in lines[3]
    # Columns are aligned: the STATUS column starts at the same offset on every row.
    col = lines[0].index("STATUS")
    assert all(line[col - 2 : col] == "  " for line in lines[2:])

    code, out, _ = cli("tasks", "--status", "running")
    assert code == 0 and len(out.splitlines()) == 3 and "vera" in out
    code, out, _ = cli("tasks", "--agent", "rivet", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in rows] == ["error", "complete"]
    code, out, _ = cli("tasks", "--agent", "nobody")
    assert out.strip() == "no tasks match"
    code, out, _ = cli("tasks", "--since", "1h")  # the fixture's tasks are from 2025
    assert out.strip() == "no tasks match"


def test_task_timeline_by_prefix(cli: Any) -> None:
    _, out, _ = cli("tasks", "--agent", "rivet", "--status", "error", "--json")
    task_id = json.loads(out.splitlines()[0])["task_id"]
    code, out, _ = cli("task", task_id[:8])
    assert code == 0
    assert f"task  {task_id}" in out
    assert "error  ValueError bad gasket" in out
    table = out.split("\n\n")[1].splitlines()
    col = table[0].index("KIND")
    kinds = [line[col:].split()[0] for line in table[2:]]
    assert kinds == ["started", "checkpoint", "checkpoint", "context_warning", "artifact", "finished"]
    assert "+1ms" in out  # durations between entries
    code, out, _ = cli("task", task_id, "--json")
    doc = json.loads(out)
    assert doc["task"]["task_id"] == task_id and len(doc["timeline"]) == 6
    assert doc["timeline"][0]["since_prev_s"] is None


def test_task_errors(cli: Any) -> None:
    code, _, err = cli("task", "zzzz")
    assert code == 1 and "no task with an id starting with 'zzzz'" in err
    code, _, err = cli("task", "")
    assert code == 1 and "matches several tasks" in err


def test_stats(cli: Any) -> None:
    code, out, _ = cli("stats", "--since", "100000d")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["AGENT", "TASKS", "RUNNING", "SUCCESS", "P50", "P95", "TOKENS", "IN", "TOKENS", "OUT"]
    assert lines[2].split()[:4] == ["rivet", "2", "0", "50%"]
    assert lines[3].split()[:4] == ["vera", "1", "1", "-"]
    _, out, _ = cli("stats", "--since", "100000d", "--json")
    rivet = json.loads(out.splitlines()[0])
    assert rivet["success_rate"] == 0.5 and rivet["input_tokens"] == 1500 + 1000


def test_migrate_is_a_no_op_on_a_current_schema(cli: Any) -> None:
    code, out, _ = cli("migrate")
    assert code == 0 and out.strip() == f"schema is current (version {LATEST})"


def test_unreachable_database_is_a_helpful_error(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", "postgresql://u:hunter2@127.0.0.1:1/nope")
    monkeypatch.setenv("SPANVISOR_DB_COMMAND_TIMEOUT", "2s")
    code, out, err = cli("tasks")
    assert code == 3
    assert "cannot reach postgresql://u:****@127.0.0.1:1/nope" in err
    assert "hunter2" not in err + out


def test_db_url_masks_external(cli: Any) -> None:
    code, out, _ = cli("db", "url")
    assert code == 0 and ":****@" in out
