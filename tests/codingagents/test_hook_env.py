"""The launcher tells the CLI's hooks their task in ``SPANVISOR_*``
variables: Claude Code (2.1.330, checked in the matrix) runs its hooks
without any ``OTEL_*`` variable, so ``spanvisor.task.id`` and
``agent.owner`` in ``OTEL_RESOURCE_ATTRIBUTES`` never reached the hook,
which then opened its requests on another task than the launcher's (and
let the owner approve their own agent's calls)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from spanvisor.hook import task as ct
from tests.cli.coding_harness import CLAUDE_PRE, TOKEN, Serve, clean_env, hook
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout_s(300)


def test_the_task_and_its_owner_are_read_from_spanvisor_variables_first() -> None:
    otel = {"OTEL_RESOURCE_ATTRIBUTES": "spanvisor.task.id=from-otel,agent.owner=bob"}
    assert (ct.launched_task(otel), ct.task_owner(otel)) == ("from-otel", "bob")
    both = {**otel, ct.ENV_TASK_ID: "from-run", ct.ENV_TASK_OWNER: "alice"}
    assert (ct.launched_task(both), ct.task_owner(both)) == ("from-run", "alice")
    assert (ct.launched_task({}), ct.task_owner({})) == (None, None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_launcher_gives_the_cli_the_task_id_and_the_owner(tmp_path: Path) -> None:
    seen = tmp_path / "env.json"
    fake = tmp_path / "claude"  # the launcher knows the CLI by its name
    fake.write_text(f"#!{sys.executable}\nimport json, os\njson.dump(dict(os.environ), open({str(seen)!r}, 'w'))\n")
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OTEL_RESOURCE_ATTRIBUTES": "agent.owner=alice"}
    endpoint = f"http://127.0.0.1:{_closed_port()}"  # nothing there: the launcher runs the CLI anyway
    launcher = [sys.executable, "-m", "spanvisor.cli", "run", "--endpoint", endpoint, "--task-id", "t-1"]
    subprocess.run(
        [*launcher, "--timeout", "1", "--", str(fake), "-p", "hello"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    got = json.loads(seen.read_text())
    assert (got[ct.ENV_TASK_ID], got[ct.ENV_TASK_OWNER]) == ("t-1", "alice")
    assert "spanvisor.task.id=t-1" in got["OTEL_RESOURCE_ATTRIBUTES"]


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    s = Serve(tmp_path / "serve")
    # What a hook under Claude Code has: SPANVISOR_* variables, no OTEL_*.
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", s.base)
    monkeypatch.setenv("SPANVISOR_OTLP_TOKEN", TOKEN)
    yield s
    s.close()


def test_a_hook_without_otel_variables_asks_on_the_launchers_task_naming_the_owner(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = f"claude-code-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv(ct.ENV_TASK_ID, task)
    monkeypatch.setenv(ct.ENV_TASK_OWNER, "alice")
    # The launcher's start of the task (spanvisor run sends it before the CLI runs).
    ct.SessionTask(task, "claude-code", True, ct.otlp_args(serve.base, TOKEN, 10)).record(
        "agent.task.start", {"agent.task.name": "push the fix", "agent.id": "claude-code"}
    )
    result: list[Any] = []
    asker = threading.Thread(target=lambda: result.append(hook("claude-code", CLAUDE_PRE)), daemon=True)
    asker.start()
    [req] = wait_until(lambda: serve.task(task)["approvals"], 240, "the request on the launcher's task")
    assert req["requester"] == "alice", "the owner may not approve it"
    assert main(["reject", task, req["approval_id"], "--url", serve.base, "--token", TOKEN, "--as", "bob"]) == 0
    asker.join(300)
    [(code, answer, _)] = result
    assert code == 0 and answer["hookSpecificOutput"]["permissionDecision"] == "deny"
