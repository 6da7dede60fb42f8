"""The control API's task document says whether the task is stalled (issue
64): false while it shows signs of life, true once it is said stalled, false
again when it resumes; a task lost while stalled keeps it. A real receiver
and pipeline, liveness windows of seconds, the task's records from
``spanvisor emit``."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.receiver.conftest import RunningReceiver, local_settings, make_pipeline
from tests.receiver.test_control_api import TOKEN, base_of, call, start_task
from tests.waiting import wait_until

from spanvisor.testing import InMemorySink


def _reader(base: str, task: str) -> Callable[[], dict[str, Any]]:
    path = f"/v1/control/tasks/{urllib.parse.quote(task, safe='')}"

    def read() -> dict[str, Any]:
        status, doc = call(base, "GET", path)
        assert status == 200, doc
        return doc

    return read


def _heartbeat(base: str, task: str) -> None:
    from spanvisor.cli.main import main

    assert main(["emit", "heartbeat", "--task", task, "--agent", "sh", "--endpoint", base, "--token", TOKEN]) == 0


def test_stalled_is_true_from_the_stall_until_the_task_resumes(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "data", [InMemorySink()], SPANVISOR_STALL_AFTER="2s", SPANVISOR_LOST_AFTER="0")
    api = RunningReceiver(pipeline, local_settings(tmp_path, token=TOKEN))
    try:
        base = base_of(api)
        task = f"quiet-{uuid.uuid4().hex[:8]}"
        read = _reader(base, task)
        start_task(base, task)
        doc = read()
        assert doc["stalled"] is False and doc["status"] != "unknown", doc
        wait_until(lambda: read()["stalled"] is True, 30, "the task to be said stalled")
        assert read()["status"] not in {"lost", "complete"}
        _heartbeat(base, task)
        wait_until(lambda: read()["stalled"] is False, 30, "the task to resume")
        # A task this process does not track: not stalled, as far as it knows.
        assert _reader(base, f"nobody-{uuid.uuid4().hex[:8]}")()["stalled"] is False
    finally:
        api.close()


def test_a_task_lost_while_stalled_keeps_stalled(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "data", [InMemorySink()], SPANVISOR_STALL_AFTER="1s", SPANVISOR_LOST_AFTER="3s")
    api = RunningReceiver(pipeline, local_settings(tmp_path, token=TOKEN))
    try:
        base = base_of(api)
        task = f"orphan-{uuid.uuid4().hex[:8]}"
        read = _reader(base, task)
        start_task(base, task)
        wait_until(lambda: read()["status"] == "lost", 30, "the task to be lost")
        assert read()["stalled"] is True
    finally:
        api.close()
