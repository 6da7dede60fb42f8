"""``spanvisor deadletter list|retry`` through ``main()``, re-delivering into the real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanvisor.cli.main import main
from spanvisor.pipeline.deadletter import DeadLetterStore, store_dir

from ._events import task_stream
from .conftest import fetch, run


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", db_url)
    monkeypatch.setenv("SPANVISOR_SINKS", "postgres")
    return tmp_path


def _seed(data_dir: Path, sink: str, events: list[object]) -> None:
    store = DeadLetterStore(store_dir(data_dir))
    try:
        for e in events:
            assert store.add(sink, e, "ValueError: cannot render this event", 3) == "added"  # type: ignore[arg-type]
    finally:
        store.close()


def test_list_then_retry_one_then_the_rest(env: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    events = task_stream(901, checkpoints=2)
    started, *rest = events
    _seed(env, "postgres", events)

    assert main(["deadletter", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["id", "sink", "set", "aside"]
    assert all(e.event_id in out for e in events)

    assert main(["deadletter", "list", "--sink", "postgres", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["event_id"] for d in listed] == [e.event_id for e in events]
    first_id = listed[0]["id"]

    # One entry by id: delivered through the real sink, then gone from the store.
    assert main(["deadletter", "retry", "--id", str(first_id)]) == 0
    out = capsys.readouterr().out
    assert started.event_id in out and "delivered" in out and "1 of 1 delivered" in out
    rows = run(lambda: fetch(db_url, "SELECT task_id FROM agent_tasks WHERE task_id = $1", started.task_id))
    assert len(rows) == 1

    assert main(["deadletter", "retry", "--sink", "postgres"]) == 0
    assert f"{len(rest)} of {len(rest)} delivered" in capsys.readouterr().out
    status = run(lambda: fetch(db_url, "SELECT status FROM agent_tasks WHERE task_id = $1", started.task_id))
    assert [r["status"] for r in status] == ["complete"]

    assert main(["deadletter", "list", "--sink", "postgres"]) == 0
    assert "no dead letters for sink postgres" in capsys.readouterr().out
    assert main(["deadletter", "retry"]) == 0
    assert "nothing to retry" in capsys.readouterr().out
