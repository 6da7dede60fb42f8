"""``spanvisor hook``: each CLI's real hook input → its exact answer.

Policy verdicts need no person (and are recorded on the task, decided by
``policy:<rule>``); ``ask`` opens a request on a real receiver's control
API that ``spanvisor approve``/``reject`` answer; nobody answering is the
policy's timeout outcome; no control API is a denial (fail closed)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.cli.main import main
from tests.cli.coding_harness import (
    CLAUDE_PERMISSION,
    CLAUDE_PRE,
    CODEX_PRE,
    GEMINI_BEFORE,
    TOKEN,
    Serve,
    clean_env,
    hook,
    task_of,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]

POLICY = """
default = "ask"
timeout = 60
on_timeout = "deny"

[[rule]]
name = "read-only"
tool = ["Read", "Glob", "Grep", "read_file"]
decision = "allow"

[[rule]]
name = "listing"
tool = ["Bash", "run_shell_command"]
command = ["ls", "ls *"]
decision = "allow"

[[rule]]
name = "no-rm"
command_regex = "\\\\brm\\\\s+-rf\\\\b"
decision = "deny"
reason = "recursive deletes are not allowed"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    clean_env(monkeypatch, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(policy))
    return policy


@pytest.fixture
def serve(tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    s = Serve(tmp_path / "serve")
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", s.base)
    monkeypatch.setenv("SPANVISOR_OTLP_TOKEN", TOKEN)
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", s.base)
    yield s
    s.close()


def _session(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "session_id": f"{payload['session_id']}-{uuid.uuid4().hex[:8]}"}


def test_policy_verdicts_answer_each_cli_in_its_own_shape_and_are_recorded(serve: Serve) -> None:
    claude = _session({**CLAUDE_PRE, "tool_name": "Read", "tool_input": {"file_path": "/work/repo/a.py"}})
    code, answer, _ = hook("claude-code", claude)
    assert code == 0
    assert answer == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "allow",
            "permissionDecisionReason": "spanvisor: allowed by policy:read-only",
        }
    }
    codex = _session(CODEX_PRE)
    code, answer, _ = hook("codex", codex)
    assert code == 0
    assert answer == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": "spanvisor: recursive deletes are not allowed",
        }
    }
    permission = _session({**CLAUDE_PERMISSION, "tool_input": {"command": "rm -rf /"}})
    code, answer, _ = hook("claude-code", permission)
    assert (code, answer) == (
        0,
        {
            "hookSpecificOutput": {
                "hookEventName": "PermissionRequest",
                "decision": {"behavior": "deny", "message": "spanvisor: recursive deletes are not allowed"},
            }
        },
    )
    gemini = _session(GEMINI_BEFORE)
    code, answer, _ = hook("gemini", gemini)
    assert (code, answer) == (0, {"decision": "allow", "reason": "spanvisor: allowed by policy:listing"})

    # Each policy decision is on its task's record, with who decided.
    for cli, payload, by, outcome in (
        ("claude-code", claude, "policy:read-only", "approve"),
        ("codex", codex, "policy:no-rm", "reject"),
        ("gemini", gemini, "policy:listing", "approve"),
    ):
        task = task_of(cli, payload["session_id"])
        cps = wait_until(lambda t=task: serve.checkpoints(t), 240, f"the policy decision on {task}")  # type: ignore[misc]
        attrs = cps[-1].attributes
        assert attrs["agent.approval.decided_by"] == by and attrs["agent.approval.outcome"] == outcome, attrs


def test_unreadable_input_and_policy_are_denials_never_tracebacks(env: Path, tmp_path: Path) -> None:
    for cli in ("claude-code", "codex", "gemini"):
        code, answer, err = hook(cli, b"{not json")
        assert code == 2 and "Traceback" not in err and "not JSON" in err
        reason = answer["reason"] if cli == "gemini" else answer["hookSpecificOutput"]["permissionDecisionReason"]
        assert "not JSON" in reason
        decision = answer["decision"] if cli == "gemini" else answer["hookSpecificOutput"]["permissionDecision"]
        assert decision == "deny"
    code, answer, _ = hook("claude-code", {"session_id": "s", "tool_input": {"command": "ls"}})
    assert code == 2 and "no tool_name" in answer["hookSpecificOutput"]["permissionDecisionReason"]
    bad = tmp_path / "bad.toml"
    bad.write_text('default = "maybe"\n')
    secret = {**CLAUDE_PRE, "tool_input": {"command": "curl -H 'Authorization: Bearer sk-live-123' x"}}
    code, answer, err = hook("claude-code", secret, "--policy", str(bad))
    out = answer["hookSpecificOutput"]
    assert (
        code == 2  # a policy that cannot be read is a failure: exit status 2 as well
        and out["permissionDecision"] == "deny"
        and "default must be one of" in out["permissionDecisionReason"]
    )
    assert "sk-live-123" not in err + json.dumps(answer), "the tool input is never echoed"


def test_no_control_api_fails_closed_unless_the_policy_says_allow(env: Path, tmp_path: Path) -> None:
    args = ("--url", "http://127.0.0.1:9", "--endpoint", "http://127.0.0.1:9")
    code, answer, _ = hook("gemini", GEMINI_BEFORE | {"tool_input": {"command": "make deploy"}}, *args)
    assert code == 0 and answer["decision"] == "deny"
    assert "control API at http://127.0.0.1:9 cannot be reached" in answer["reason"]
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('on_unreachable = "allow"\n')
    code, answer, _ = hook("claude-code", CLAUDE_PRE, *args, "--policy", str(lenient))
    assert code == 0 and answer["hookSpecificOutput"]["permissionDecision"] == "allow"


def _ask_in_thread(cli: str, payload: dict[str, Any], *args: str) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(hook(cli, payload, *args)), daemon=True)
    t.start()
    return t, result


@pytest.mark.parametrize(("verb", "expected"), [("approve", "allow"), ("reject", "deny")])
def test_ask_waits_for_a_person_and_answers_with_their_decision(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, verb: str, expected: str
) -> None:
    # Under the launcher: the task is the one OTEL_RESOURCE_ATTRIBUTES names.
    task = f"claude-code-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"service.version=2.1,spanvisor.task.id={task}")
    from spanvisor.hook.task import SessionTask, otlp_args

    SessionTask(task, "claude-code", True, otlp_args(serve.base, TOKEN, 10)).record(
        "agent.task.start", {"agent.task.name": "push the fix", "agent.id": "claude-code"}
    )
    t, result = _ask_in_thread("claude-code", _session(CLAUDE_PRE))
    req = wait_until(lambda: serve.task(task)["approvals"], 240, "the open request")[0]
    assert req["question"] == "Allow Bash: git push origin main?"
    code = main([verb, task, req["approval_id"], "--url", serve.base, "--token", TOKEN, "--as", "alice"])
    assert code == 0
    t.join(300)
    [(code, answer, _)] = result
    out = answer["hookSpecificOutput"]
    assert code == 0 and out["permissionDecision"] == expected
    word = "approved" if verb == "approve" else "rejected"
    assert out["permissionDecisionReason"] == f"spanvisor: {word} by alice"
    # The person's decision is on the task's record (who and what).
    decisions = wait_until(lambda: serve.task(task)["decisions"], 240, "the decision")
    assert decisions[-1]["action"] == verb and decisions[-1]["approval_id"] == req["approval_id"]
    wait_until(lambda: not serve.task(task)["approvals"], 240, "the request closed")


def test_nobody_deciding_in_time_is_the_policys_timeout_outcome(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = tmp_path / "quick.toml"
    quick.write_text('timeout = 1\non_timeout = "allow"\n')
    payload = _session(CODEX_PRE)
    code, answer, _ = hook("codex", payload, "--policy", str(quick))
    assert (code, answer) == (0, {}), "Codex's allow says nothing (it rejects permissionDecision: allow)"
    task = task_of("codex", payload["session_id"])
    wait_until(lambda: serve.task(task)["state"] == "running", 240, "the session's task")
    wait_until(lambda: not serve.task(task)["approvals"], 240, "the timed-out request closed")
    strict = tmp_path / "strict.toml"
    strict.write_text("timeout = 1\n")
    code, answer, _ = hook(
        "gemini", _session(GEMINI_BEFORE | {"tool_input": {"command": "make"}}), "--policy", str(strict)
    )
    assert (code, answer["decision"]) == (0, "deny") and "policy:on_timeout" in answer["reason"]
