"""The gate's requests as people see them, through ``spanvisor hook`` and a
real receiver: a Claude Code ``Write`` of 50 kB (over the old 8 KiB cap,
which opened no request at all and left the hook waiting out its timeout)
opens a request; its secrets are masked in the control API, in ``spanvisor
approvals`` and in ``approve``; a person approves it and the hook allows
exactly that call. The question of a Bash call with the issue's secrets is
masked for everyone who reads it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.approvals import action_line, cut
from spanvisor.cli.main import main
from tests.cli.coding_harness import CLAUDE_PRE, TOKEN, Serve, clean_env, hook, task_of
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
ANTHROPIC = "sk-ant-api03-" + "Xy7Qp2Lm9Vb4Nc8Rt1Zw" * 3
CONTENT = f"GITHUB_TOKEN={GH}\n" + "".join(f"row_{i:05d} = load({i})\n" for i in range(2_200)) + "LAST_LINE = 1\n"


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)  # no policy: every call asks a person
    s = Serve(tmp_path / "serve")
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", s.base)
    monkeypatch.setenv("SPANVISOR_OTLP_TOKEN", TOKEN)
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", s.base)
    yield s
    s.close()


def _ask(payload: dict[str, Any]) -> tuple[threading.Thread, list[Any], str]:
    payload = {**payload, "session_id": f"s-{uuid.uuid4().hex[:8]}", "tool_use_id": f"toolu_{uuid.uuid4().hex[:8]}"}
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(hook("claude-code", payload)), daemon=True)
    t.start()
    return t, result, task_of("claude-code", payload["session_id"])


def test_a_large_write_is_asked_shown_masked_and_allowed_once_approved(serve: Serve) -> None:
    write = {**CLAUDE_PRE, "tool_name": "Write", "tool_input": {"file_path": "/repo/data.py", "content": CONTENT}}
    assert len(json.dumps(write["tool_input"])) > 50_000
    t, result, task = _ask(write)
    req = wait_until(lambda: serve.task(task)["approvals"], 240, "the request of a 50 kB Write")[0]
    shown = json.dumps(req)
    assert GH[4:] not in shown
    assert req["action"]["tool"] == "Write" and req["action"]["arguments"]["content"].endswith("LAST_LINE = 1\n")
    # What `spanvisor approvals` and `approve` print of it (the hook's thread
    # holds stdout while it waits: the lines are checked as the CLI makes them).
    line = action_line(req)
    assert GH[4:] not in line and " characters … " in line and "LAST_LINE" in line and cut(req)
    assert main(["approve", task, req["approval_id"], "--as", "alice", "--url", serve.base, "--token", TOKEN]) == 0
    t.join(300)
    [(code, answer, _)] = result
    assert code == 0 and answer["hookSpecificOutput"]["permissionDecision"] == "allow", answer


def test_the_issue_s_question_reaches_nobody_with_its_secrets(serve: Serve) -> None:
    command = f"export ANTHROPIC_API_KEY={ANTHROPIC} GITHUB_TOKEN={GH} && ./deploy.sh --token=tok-9f8e7d6c5b4a"
    bash = {**CLAUDE_PRE, "tool_input": {"command": command, "description": "deploy"}}
    t, result, task = _ask(bash)
    req = wait_until(lambda: serve.task(task)["approvals"], 240, "the request")[0]
    for secret in (ANTHROPIC[13:], GH[4:], "tok-9f8e7d6c5b4a"):
        assert secret not in json.dumps(req), secret
    assert "./deploy.sh --token=****" in req["question"] and "./deploy.sh --token=****" in req["details"]
    # The sinks' events carry the same masked request.
    events = wait_until(
        lambda: [e for e in serve.sink.events if any(a.approval_id == req["approval_id"] for a in e.task.approvals)],
        240,
        "the request in the sinks' events",
    )
    asked = events[-1].task.approvals[0]
    assert GH[4:] not in asked.question and GH[4:] not in (asked.details or "")
    assert GH[4:] in (asked.action or "")  # raw where the digest and the permit need it
    assert main(["reject", task, req["approval_id"], "--as", "alice", "--url", serve.base, "--token", TOKEN]) == 0
    t.join(300)
    [(code, answer, _)] = result
    assert code == 0 and answer["hookSpecificOutput"]["permissionDecision"] == "deny"
