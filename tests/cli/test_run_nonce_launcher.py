"""``spanvisor run --task-id X`` after a run of X ended is a new run of X,
under a root of its own (issue 64): the launcher gives the CLI a run
(``spanvisor.task.run`` in its resource; its local gate answers the hooks
in that run), and the CLI's records, the launcher's own, the hooks' notes
and the end all land on that run; a fresh task id gets none (its ids are
the task id's, as before). A real receiver in process, the real launcher,
a fake ``claude`` (tests/cli/fake_claude.py) and the real hook, through
the launcher's small client as Claude Code runs it (no OTEL_* variable)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from spanvisor.events import Checkpoint, TaskFinished, run_id_of
from spanvisor.gate import session as gs
from spanvisor.gate import taskids
from spanvisor.launcher.session import _ended
from tests.cli.coding_harness import TOKEN, Serve, clean_env, fake_claude
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]

POLICY = """
default = "deny"

[[rule]]
name = "listing"
tool = ["Bash"]
command = ["ls", "ls *"]
decision = "allow"
"""


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    monkeypatch.setattr(gs, "_JOINED", {})  # no run joined by an earlier launcher in this process
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(policy))
    s = Serve(tmp_path / "serve")
    yield s
    s.close()


def _claude(tmp_path: Path) -> Path:
    return fake_claude(tmp_path)


def _run(serve: Serve, exe: Path, task: str) -> int:
    return main(["run", "--task-id", task, "--endpoint", serve.base, "--token", TOKEN, "--", str(exe), "-p", "fix it"])


def _seen(record: Path) -> dict[str, str]:
    env: dict[str, str] = json.loads(record.read_text())["env"]
    return env


def _ends(serve: Serve, task: str) -> list[TaskFinished]:
    return [e for e in serve.sink.for_task(task) if isinstance(e, TaskFinished)]


def test_a_task_id_given_again_after_its_run_ended_is_a_new_run_its_hooks_join(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exe = _claude(tmp_path)
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    assert _ended(task, serve.base, TOKEN) is None, "a task id never seen: no run ended"
    first = tmp_path / "first.json"
    monkeypatch.setenv("FAKE_RECORD", str(first))
    monkeypatch.setenv("FAKE_MODE", "ok")
    assert _run(serve, exe, task) == 0
    [done] = wait_until(lambda: _ends(serve, task), 240, "the first run's end")
    assert done.outcome == "complete"
    assert done.task.run_id == run_id_of(*taskids.launcher_task_ids(task)), "no run: the task id's own root"
    env = _seen(first)
    assert gs.RESOURCE_TASK_RUN not in gs.resource_attributes(env)
    assert "new run" not in capsys.readouterr().err
    assert _ended(task, serve.base, TOKEN) == "complete"

    # Again, with the same task id: the CLI hangs until the launcher gets a SIGTERM.
    second = tmp_path / "second.json"
    monkeypatch.setenv("FAKE_RECORD", str(second))
    monkeypatch.setenv("FAKE_MODE", "hang")
    running = Path(str(second) + ".running")
    said: list[Any] = []

    def hook_then_stop() -> None:
        try:
            wait_until(running.exists, 300, "the CLI to run")
            # The CLI's hook, as Claude Code runs it: the `spanvisor` first on the PATH the launcher gave
            # (its small client, to the launcher's local gate), with the CLI's environment less OTEL_*.
            seen = _seen(second)
            env = {k: v for k, v in {**os.environ, **seen}.items() if not k.startswith("OTEL_")}
            env["SPANVISOR_OTLP_TOKEN"] = TOKEN
            small = Path(seen["SPANVISOR_GATE_SOCKET"]).with_name("bin") / "spanvisor"
            payload = {
                "session_id": "fake-session",
                "hook_event_name": "PreToolUse",
                "tool_name": "Bash",
                "tool_input": {"command": "ls -la"},
                "tool_use_id": "toolu_1",
                "cwd": str(tmp_path),
            }
            ran = subprocess.run(
                [str(small), "hook", "claude-code"],
                input=json.dumps(payload).encode(),
                check=False,
                env=env,
                capture_output=True,
                timeout=120,
            )
            said.append((ran.returncode, json.loads(ran.stdout), ran.stderr.decode()))
            wait_until(lambda: _noted(serve, task), 120, "the hook's note on the task")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the launcher ends the task, cancelled

    stopper = threading.Thread(target=hook_then_stop, daemon=True)
    stopper.start()
    try:
        assert _run(serve, exe, task) == 128 + signal.SIGTERM
    finally:
        stopper.join(60)
    err = capsys.readouterr().err
    assert f"task {task} already ran and ended (complete)" in err and "this session is a new run of it" in err, err
    env = _seen(second)
    run = gs.resource_attributes(env)[gs.RESOURCE_TASK_RUN]
    assert taskids.is_run(run)
    assert env[gs.ENV_TASK_ID] == task and gs.resource_attributes(env)[gs.RESOURCE_TASK_ID] == task
    assert said and said[0][1]["hookSpecificOutput"]["permissionDecision"] == "allow", said

    ends = wait_until(lambda: (e := _ends(serve, task)) and len(e) == 2 and e, 240, "the second run's end")
    assert [e.outcome for e in ends] == ["complete", "cancelled"], ends
    new_run = run_id_of(*taskids.launcher_task_ids(task, run))
    assert ends[1].task.run_id == new_run != ends[0].task.run_id
    # The CLI's records (its model call) and the hook's note are the new run's.
    assert ends[1].task.input_tokens == 120, ends[1].task
    noted = _noted(serve, task)
    assert noted and {c.task.run_id for c in noted} == {new_run}, noted


def _noted(serve: Serve, task: str) -> list[Checkpoint]:
    return [c for c in serve.checkpoints(task) if "allowed by policy:listing" in (c.task.message or "")]


def test_a_launcher_inside_a_launched_session_never_passes_the_outer_run_on(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv(gs.ENV_TASK_ID, "outer-task")
    resource = gs.encode_resource({gs.RESOURCE_TASK_ID: "outer-task", gs.RESOURCE_TASK_RUN: outer, "team": "a"})
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", resource)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_MODE", "ok")
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    assert _run(serve, _claude(tmp_path), task) == 0
    env = _seen(record)
    attrs = gs.resource_attributes(env)
    assert gs.RESOURCE_TASK_RUN not in attrs, env
    assert (attrs[gs.RESOURCE_TASK_ID], attrs["team"], env[gs.ENV_TASK_ID]) == (task, "a", task)
    [done] = wait_until(lambda: _ends(serve, task), 240, "the task's end")
    assert done.outcome == "complete" and done.task.run_id == run_id_of(*taskids.launcher_task_ids(task))
