"""Without the launcher, a session's task ends as the CLI says it ended, and
a cancelled session's calls are denied: ``spanvisor hook`` against a real
receiver and pipeline.

* The turn's and the session's end events (each CLI's own inputs) end the
  task ``complete``, ``error`` (with the API's error) or ``cancelled``.
* A Cancel of the task (the control API, as Slack's button records it)
  denies the session's next call, whatever the policy allows: ``cancelled
  by alice: <comment>``, said on the task; with the receiver gone, the
  cancel already seen still denies; and the session's end is ``cancelled``.
* A person's wait that a Cancel ends is answered ``cancelled by alice``,
  not ``rejected``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.clis import registry
from spanvisor.control import runs
from spanvisor.events import TaskFinished
from spanvisor.hook.task import SessionTask, otlp_args
from tests.cli.coding_harness import CLAUDE_PRE, CODEX_PRE, GEMINI_BEFORE, TOKEN, Serve, clean_env, hook, task_of
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]

ALLOW_ALL = 'default = "allow"\n'
ASK_ALL = 'default = "ask"\ntimeout = 120\n'


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text(ALLOW_ALL)
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(policy))
    s = Serve(tmp_path / "serve")
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", s.base)
    monkeypatch.setenv("SPANVISOR_OTLP_TOKEN", TOKEN)
    # The call right after a cancel is denied only if its look answers in
    # time: at the default 100 ms a loaded machine's serve may answer later
    # (that call's allow then stands, by design), so the look may wait 5 s.
    monkeypatch.setenv("SPANVISOR_HOOK_CANCEL_WAIT", "5s")
    yield s
    s.close()


def _sid() -> str:
    return str(uuid.uuid4())


def _opened(serve: Serve, cli: str, sid: str) -> str:
    """The session's task, opened as the CLI's first records would open it."""
    task = task_of(cli, sid)
    SessionTask(sid, registry.need(cli).service, False, otlp_args(serve.base, TOKEN, 10)).record(
        "agent.task.start", {"agent.task.name": "fix the tests", "agent.id": registry.need(cli).service}
    )
    wait_until(lambda: serve.sink.for_task(task), 240, f"task {task} to open")
    return task


def _finished(serve: Serve, task: str) -> TaskFinished:
    return wait_until(lambda: serve.finished(task), 240, f"task {task} to end")


def _said(cli: str, sid: str, event: str, **kw: Any) -> tuple[int, dict[str, Any], str]:
    return hook(cli, {"session_id": sid, "cwd": "/work", "hook_event_name": event, **kw})


@pytest.mark.parametrize(
    ("cli", "events", "status", "error"),
    [
        ("claude-code", [("Stop", {"prompt_id": "p1"})], "complete", None),
        (
            "claude-code",
            [("StopFailure", {"prompt_id": "p1", "error": "rate_limit", "last_assistant_message": "API Error: 429"})],
            "error",
            "API Error: 429 (rate_limit)",
        ),
        ("claude-code", [("UserPromptSubmit", {"prompt_id": "p1"})], "cancelled", None),
        ("codex", [("UserPromptSubmit", {"turn_id": "t1"}), ("Stop", {"turn_id": "t1"})], "complete", None),
        ("codex", [("UserPromptSubmit", {"turn_id": "t1"})], "error", "Codex ended before its turn finished"),
        ("codex", [("Interrupt", {"turn_id": "t1"})], "cancelled", None),
        ("gemini", [("BeforeAgent", {}), ("AfterAgent", {"prompt_response": "done"})], "complete", None),
        ("gemini", [("BeforeAgent", {})], "cancelled", None),
    ],
)
def test_the_sessions_end_event_ends_its_task_as_the_cli_says(
    serve: Serve, cli: str, events: list[tuple[str, dict[str, Any]]], status: str, error: str | None
) -> None:
    sid = _sid()
    task = _opened(serve, cli, sid)
    for event, kw in events:
        assert _said(cli, sid, event, **kw)[:2] == (0, {})
    end = {"prompt_id": "p1"} if cli == "claude-code" else {}
    assert _said(cli, sid, "SessionEnd", reason="other", **end)[:2] == (0, {})
    done = _finished(serve, task)
    assert done.task.status == status, done.task
    got = done.error_message
    assert (got is None) == (error is None) and (error is None or error in str(got)), (got, error)
    assert done.task.task_name == "fix the tests", "the hook's end keeps the name the CLI's records gave"


def _cancel(serve: Serve, task: str, comment: str = "wrong branch") -> None:
    assert serve.cancel(task, comment)["outcome"] == "applied"


@pytest.mark.parametrize(
    ("cli", "call"), [("claude-code", CLAUDE_PRE), ("codex", CODEX_PRE), ("gemini", GEMINI_BEFORE)]
)
def test_a_cancelled_sessions_next_call_is_denied_whatever_the_policy_allows(
    serve: Serve, cli: str, call: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = _sid()
    task = _opened(serve, cli, sid)
    payload = {**call, "session_id": sid, "tool_input": {"command": "ls"}}
    code, answer, _ = hook(cli, payload)
    assert code == 0 and _decision(cli, answer) == "allow"
    _cancel(serve, task)
    code, answer, _ = hook(cli, {**payload, "tool_use_id": "t2", "call_id": "t2"})
    assert code == 0 and _decision(cli, answer) == "deny", answer
    assert _reason(cli, answer) == "spanvisor: cancelled by alice: wrong branch"
    # Said on the task: the hook blocked the call of a cancelled session.
    wait_until(
        lambda: any("spanvisor hook blocked" in str(c.task.message) for c in serve.checkpoints(task)),
        240,
        "the blocked call on the task",
    )
    # With the control API unreachable, the cancel already seen still denies.
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", "http://127.0.0.1:9")
    code, answer, _ = hook(cli, {**payload, "tool_use_id": "t3", "call_id": "t3"})
    assert code == 0 and _reason(cli, answer) == "spanvisor: cancelled by alice: wrong branch"
    monkeypatch.delenv("SPANVISOR_CONTROL_URL")
    # And the session's end says who cancelled it.
    end = {"prompt_id": "p1"} if cli == "claude-code" else {}
    _said(cli, sid, "SessionEnd", reason="other", **end)
    done = _finished(serve, task)
    assert done.task.status == "cancelled" and str(done.task.message).startswith("Cancelled by alice: wrong branch")


def test_a_session_that_ends_its_own_task_is_cancelled_all_the_same(serve: Serve) -> None:
    """Issue 63, "a cancel can be evaded": without the launcher or the
    system gate, nothing out of the agent's reach keys its session, so the
    agent may send its task's end, marked complete, with the OTLP token it
    holds. Before, a person's Cancel was then refused ("already finished")
    while the CLI went on. A session's end is its agent's word alone: the
    Cancel applies after it, said so, and the hook denies the session's next
    call."""
    sid = _sid()
    task = _opened(serve, "claude-code", sid)
    payload = {**CLAUDE_PRE, "session_id": sid, "tool_input": {"command": "ls"}}
    code, answer, _ = hook("claude-code", payload)
    assert code == 0 and _decision("claude-code", answer) == "allow"
    agent = SessionTask(sid, registry.need("claude-code").service, False, otlp_args(serve.base, TOKEN, 10))
    assert agent.end(None, time.time_ns(), "complete", None, None)
    assert _finished(serve, task).task.status == "complete"
    got = serve.cancel(task, "it is still running")
    assert got["outcome"] == "applied", got
    assert got["reason"] == runs.AGENT_ENDED.format(outcome="complete"), got
    code, answer, _ = hook("claude-code", {**payload, "tool_use_id": "t2"})
    assert code == 0 and _decision("claude-code", answer) == "deny", answer
    assert _reason("claude-code", answer) == "spanvisor: cancelled by alice: it is still running"


def test_a_session_never_cancelled_is_not_denied_when_serve_cannot_be_reached(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", "http://127.0.0.1:9")
    code, answer, _ = hook("claude-code", {**CLAUDE_PRE, "session_id": _sid()})
    assert code == 0 and _decision("claude-code", answer) == "allow"


def test_a_persons_wait_ended_by_a_cancel_says_cancelled_not_rejected(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "ask.toml"
    policy.write_text(ASK_ALL)
    sid = _sid()
    task = _opened(serve, "claude-code", sid)
    result: list[Any] = []
    t = threading.Thread(
        target=lambda: result.append(hook("claude-code", {**CLAUDE_PRE, "session_id": sid}, "--policy", str(policy))),
        daemon=True,
    )
    t.start()
    wait_until(lambda: serve.task(task)["approvals"], 240, "the open request")
    _cancel(serve, task, "not today")
    t.join(300)
    [(code, answer, _)] = result
    assert code == 0 and _decision("claude-code", answer) == "deny"
    assert _reason("claude-code", answer) == "spanvisor: cancelled by alice: not today"


def _decision(cli: str, answer: dict[str, Any]) -> str:
    if cli == "codex" and answer == {}:  # Codex's allow says nothing (it rejects permissionDecision: allow)
        return "allow"
    return str(answer["decision"] if cli == "gemini" else answer["hookSpecificOutput"]["permissionDecision"])


def _reason(cli: str, answer: dict[str, Any]) -> str:
    return str(answer["reason"] if cli == "gemini" else answer["hookSpecificOutput"]["permissionDecisionReason"])


def _name(serve: Serve, task: str) -> str | None:
    events = serve.sink.for_task(task)
    return events[-1].task.task_name if events else None


def test_a_sessions_first_prompt_names_its_task_as_soon_as_it_is_asked(serve: Serve) -> None:
    """Without the launcher, Copilot CLI's task was named only at its exit
    (its telemetry's prompt comes with the turn's end): a person could not
    find the running session to cancel it. Its first prompt now names it
    (one line, clipped, secrets redacted) from the hook's turn event; a
    later prompt does not rename it; the end keeps the name."""
    sid = _sid()
    task = task_of("copilot", sid)
    first = {"sessionId": sid, "timestamp": 1, "cwd": "/work", "prompt": "Fix the flaky\nlogin test"}
    assert hook("copilot", first)[:2] == (0, {})
    wait_until(lambda: _name(serve, task) == "Fix the flaky login test", 240, "the task named by its first prompt")
    assert hook("copilot", {**first, "prompt": "now the signup test"})[:2] == (0, {})
    assert hook("copilot", {"sessionId": sid, "timestamp": 3, "cwd": "/work", "reason": "complete"})[:2] == (0, {})
    done = _finished(serve, task)
    assert done.task.task_name == "Fix the flaky login test", done.task


def test_a_first_prompt_with_a_secret_names_the_task_without_it(serve: Serve) -> None:
    sid = _sid()
    task = task_of("claude-code", sid)
    secret = "ghp_" + "a1B2c3D4e5" * 4
    said = _said("claude-code", sid, "UserPromptSubmit", prompt_id="p1", prompt=f"deploy with token {secret} now")
    assert said[:2] == (0, {})
    name = wait_until(lambda: _name(serve, task), 240, "the task named by its first prompt")
    assert secret not in name and name.startswith("deploy with token"), name
