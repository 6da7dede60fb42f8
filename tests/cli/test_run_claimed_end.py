"""A launched task ends by the launcher's word only (issue 63): an agent
that sends its own task's end, marked complete, with the OTLP token it was
given, cannot dodge a cancel.

A fake ``claude`` (``FAKE_MODE=claim``) under the real launcher, against a
real receiver and pipeline: it sends its task's end with spanvisor's own
helper, plain and with every 64-hex-digit string it can find in its
environment, argv and its launcher's ``/proc`` entries as the proof, then
works on. The task stays open (the claim said on it once), a cancel is
applied (not "already finished"), the launcher stops the CLI, and the task
ends ``cancelled`` with the agent's claim kept in its notes. The launcher
process is not dumpable while it runs the session.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from tests.cli.coding_harness import TOKEN, Serve, clean_env, fake_claude
from tests.waiting import wait_until

PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4

pytestmark = pytest.mark.slow


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    s = Serve(tmp_path / "serve")
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        yield s
    finally:
        s.close()
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # the launcher ran in this process: as it was


@pytest.mark.timeout_s(600)
def test_an_agent_that_claims_its_end_is_still_cancelled(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_MODE", "claim")
    monkeypatch.setenv("FAKE_OTLP_TOKEN", TOKEN)  # every agent may hold the OTLP token
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    running, claims = Path(f"{record}.running"), Path(f"{record}.claims")
    seen: dict[str, Any] = {}

    def person() -> None:
        try:
            look()
        finally:
            if "cancel" not in seen:  # the launcher would wait for ever: stopped as a terminal would
                os.kill(os.getpid(), signal.SIGTERM)

    def look() -> None:
        wait_until(running.exists, 300, "the CLI to claim its end and work on")
        wait_until(
            lambda: any("without its starter's word" in str(c.task.message) for c in serve.checkpoints(task)),
            120,
            "the claim said on the task",
        )
        seen["finished before"] = serve.finished(task)
        seen["dumpable"] = ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
        seen["cancel"] = serve.cancel(task)

    helper = threading.Thread(target=person, daemon=True)
    helper.start()
    args = [
        "run",
        "--task-id",
        task,
        "--endpoint",
        serve.base,
        "--token",
        TOKEN,
        "--",
        str(fake_claude(tmp_path)),
        "-p",
        "go",
    ]
    code = main(args)
    helper.join(30)
    # The receiver took every one of the agent's ends, and none ended the task.
    assert int(claims.read_text()) >= 1
    assert "cancel" in seen, "the claim was never said on the task"
    assert seen["finished before"] is None, seen
    assert seen["dumpable"] == 0, "the launcher's memory and environment were open to its CLI"
    assert seen["cancel"].get("outcome") == "applied", seen["cancel"]
    assert code != 0
    done = wait_until(lambda: serve.finished(task), 120, "the task's end")
    assert done.outcome == "cancelled", done
    assert any("reported this task's end (complete) without its starter's word" in n for n in done.notes), done.notes
    said = [
        c
        for c in serve.checkpoints(task)
        if c.source == "event" and "without its starter's word" in str(c.task.message)
    ]
    assert len(said) == 1, "the claim is said once, however often it is made"
