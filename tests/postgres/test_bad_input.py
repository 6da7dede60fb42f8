"""Input PostgreSQL would reject is stored safely, with the reason recorded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from spanvisor.events import Checkpoint, stable_id
from spanvisor.sink import SinkResult
from spanvisor_postgres import PostgresSink

from ._events import T0, task_stream, view
from .conftest import fetch, make_config, make_ctx, run


def test_nul_megabyte_and_invalid_utf8_are_stored_with_notes(db_url: str, tmp_path: Path) -> None:
    bad_bytes = b"caf\xe9 \xff\xfe done".decode("utf-8", "surrogateescape")  # invalid UTF-8
    v = view(50, agent="nul\x00agent", task_name="lone \ud800 surrogate", message="x" * 1_000_000)
    cp = Checkpoint(
        event_id=stable_id("bad", 1),
        time_ns=T0 + 5,
        task=v,
        attributes={"k\x00ey": "v\x00al", "nan": float("nan"), "bytes": bad_bytes, "deep": [[[1]]]},
        notes=("agent.progress: 140 clamped to 100",),
    )
    v2 = dataclasses.replace(v, message="nul\x00in\x00message " + bad_bytes, updated_ns=T0 + 6)
    cp2 = Checkpoint(event_id=stable_id("bad", 2), time_ns=T0 + 6, task=v2)

    async def main() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path, db_url)))
        assert await sink.export([cp, cp2]) is SinkResult.SUCCESS
        await sink.shutdown(5)
        rows = {r["event_id"]: r for r in await fetch(db_url, "SELECT * FROM agent_checkpoints")}
        first, second = rows[cp.event_id], rows[cp2.event_id]
        assert first["agent_id"] == "nulagent"
        assert len(first["message"]) == 8192 and first["message"].endswith("…[truncated]")
        notes = json.loads(first["notes"])
        assert notes[0] == "agent.progress: 140 clamped to 100"  # the tracker's notes come first
        assert "agent_id: 1 NUL characters removed" in notes
        assert "message: truncated from 1000000 to 8192 characters" in notes
        assert any(n.startswith("attributes.nan: nan is not valid JSON") for n in notes)
        attrs = json.loads(first["attributes"])
        assert attrs == {"key": "val", "nan": None, "bytes": "caf\ufffd \ufffd\ufffd done", "deep": [[[1]]]}
        assert second["message"] == "nulinmessage caf\ufffd \ufffd\ufffd done"
        assert any("lone surrogates" in n for n in json.loads(second["notes"]))
        [task] = await fetch(db_url, "SELECT task_name, notes FROM agent_tasks WHERE agent_id = 'nulagent'")
        assert task["task_name"] == "lone \ufffd surrogate"
        assert any("task_name: 1 invalid UTF-8" in n for n in json.loads(task["notes"]))

    run(main)


def test_a_row_postgres_refuses_is_quarantined_and_the_rest_lands(db_url: str, tmp_path: Path) -> None:
    good = task_stream(60, checkpoints=20)
    v = dataclasses.replace(good[3].task, context_tokens=2**64)  # beyond bigint
    poison = Checkpoint(event_id=stable_id("poison"), time_ns=good[3].time_ns + 1, task=v)
    batch = [*good[:4], poison, *good[4:]]

    async def main() -> None:
        for _ in range(2):  # a replay quarantines nothing twice
            sink = PostgresSink()
            await sink.start(make_ctx(make_config(tmp_path, db_url)))
            assert await sink.export(batch) is SinkResult.SUCCESS
            assert sink.outbox is not None and sink.outbox.size == 0
            await sink.shutdown(5)
        ids = {r["event_id"] for r in await fetch(db_url, "SELECT event_id FROM agent_checkpoints")}
        expected = {e.event_id for e in good if e.kind in ("Checkpoint", "ContextWarning")}
        assert expected <= ids and poison.event_id not in ids
        [q] = await fetch(db_url, "SELECT * FROM quarantine")
        assert q["event_id"] == poison.event_id and q["task_id"] == v.task_id
        assert "int64" in q["reason"] or "out of range" in q["reason"]
        assert json.loads(q["payload"])["task"]["context_tokens"] == 2**64
        [task] = await fetch(db_url, "SELECT status FROM agent_tasks WHERE task_id = $1", v.task_id)
        assert task["status"] == "complete"

    run(main)
