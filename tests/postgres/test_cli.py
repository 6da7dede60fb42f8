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


def test_task_ids_are_shown_so_they_can_be_told_apart_and_pasted() -> None:
    """The launcher's ids all begin ``claude-code-``: each is shown as far
    as it takes to tell it from the others listed (at least 12 characters),
    which ``spanvisor task`` takes as a unique prefix."""
    from spanvisor_postgres.cli import short_ids

    ids = ["claude-code-3f2a9b1c4d5e6f70", "claude-code-3f2b00112233aabb", "claude-code-99aa", "t-1", "t-1x"]
    assert short_ids(ids) == ["claude-code-3f2a", "claude-code-3f2b", "claude-code-9", "t-1", "t-1x"]
    shown = short_ids(ids)
    for s, full in zip(shown, ids, strict=True):
        assert full.startswith(s) and [i for i in ids if i.startswith(s)] in ([full], [full, full + "x"])
    sessions = ["claude-code:1dfd362f-21c8", "claude-code:1dfd9999-0000", "codex:0199aa"]
    assert short_ids(sessions) == ["claude-code:1dfd3", "claude-code:1dfd9", "codex:0199aa"]


def test_the_tasks_table_tells_launched_tasks_apart(
    pg_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import dataclasses

    url = pg_server.database()  # of its own: the module's database keeps its three tasks
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", url)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    events = []
    for n, tid in enumerate(("claude-code-3f2a9b1c4d5e6f70", "claude-code-3f2b00112233aabb")):
        for e in task_stream(40 + n, checkpoints=1, agent="claude-code"):
            events.append(dataclasses.replace(e, task=dataclasses.replace(e.task, task_id=tid)))

    async def load() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, url)))
        await sink.export(events)
        await sink.shutdown(5)

    run(load)
    _, out, _ = cli("tasks", "--agent", "claude-code")
    firsts = [line.split()[0] for line in out.splitlines()[2:]]
    assert sorted(firsts) == ["claude-code-3f2a", "claude-code-3f2b"]
    code, out, _ = cli("task", "claude-code-3f2a")
    assert code == 0 and "task  claude-code-3f2a9b1c4d5e6f70" in out
