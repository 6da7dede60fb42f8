"""Claude Code 2.1.330, the real CLI, offline against the fake Messages
API, its telemetry to a real serve (PostgreSQL, the fake Slack).

Alone, a session is one task named from its prompt, its model calls and
tokens counted once, its cost the CLI's own, its Bash call a step, the
scripted growth of its context warned at 70 % and 85 %, and its end seen
by liveness (lost). Under ``spanvisor run`` it ends complete, or failed
with the API's error. The PreToolUse hook: a policy's denial the agent
obeys (the command never runs, the model is told why), a person's approval
from ``spanvisor approve`` and from a signed Slack click (the command runs).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents import standin
from tests.codingagents.agents import Alone
from tests.codingagents.endhooks import left_to_liveness
from tests.codingagents.fake_anthropic import result_text, tool_results
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, Usage, error, text, tool
from tests.codingagents.served import MODEL, Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

# Input (fresh, cache read, cache write) and output per call: 7,040 of the
# 10,000-token window after the first call, 9,020 after the second.
FIRST, LAST = Usage(5_000, 40, 1_500, 500), Usage(6_000, 20, 2_000, 1_000)
WAIT_S = 120.0


def _hello(marker: str) -> Script:
    return Script(
        [
            tool("Bash", FIRST, command=f"echo hello-{marker}", description="say hello"),
            text("It printed hello.", LAST),
        ]
    )


def _checkpoints(matrix: Matrix, task_id: str, source: str) -> list[dict[str, Any]]:
    return [c for c in matrix.timeline(task_id) if c["source"] == source]


def _attrs(row: dict[str, Any]) -> dict[str, Any]:
    a = row["attributes"]
    return dict(json.loads(a) if isinstance(a, str) else a)


def _settled(matrix: Matrix, task_id: str, output_tokens: int) -> dict[str, Any]:
    def row() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["output_tokens"] >= output_tokens else None

    return dict(wait_until(row, WAIT_S, f"task {task_id} with {output_tokens} output tokens"))


def _ended(matrix: Matrix, task_id: str) -> dict[str, Any]:
    def row() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["ended_at"] is not None else None

    return dict(wait_until(row, WAIT_S, f"task {task_id} to end"))


@pytest.fixture(scope="module")
def alone(cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory) -> Alone:
    """The session alone, shared by the test that reads it and the file's last
    test, which sees liveness end it: its window runs during the tests between."""
    tmp = tmp_path_factory.mktemp("alone")
    run_id = anthropic.script(uuid.uuid4().hex[:12], _hello("alone"))
    env = cc.env(tmp / "home", matrix, anthropic, run_id)
    prompt = f"say hello with bash ({run_id}), the key is sk-ant-SECRETSECRET1234"
    return Alone(run_id, cc.claude(cli_bin, tmp / "work", env, prompt))


def test_a_session_alone_is_one_named_task_with_its_calls_cost_step_and_context_warnings(
    matrix: Matrix, anthropic: FakeModelAPI, alone: Alone
) -> None:
    run_id, ran = alone.run_id, alone.ran
    assert ran.code == 0, ran.said()
    session, result = cc.task_of(ran), cc.result_of(ran)
    assert result["result"] == "It printed hello." and not result["is_error"]
    asked = [s for s in anthropic.requests(run_id) if s.path.startswith("/v1/messages")]
    assert [result_text(r) for r in tool_results(asked[-1].body)] == ["hello-alone"], "the Bash call ran"

    row = _settled(matrix, session, 60)
    # One task for the session, keyed by Claude Code's session id, named from the prompt (redacted).
    assert row["task_name"] == f"say hello with bash ({run_id}), the key is sk-ant-****"
    assert [r["task_id"] for r in matrix.tasks_of("claude-code") if run_id in (r["task_name"] or "")] == [session]
    assert (row["agent_id"], row["model"]) == ("claude-code", MODEL)
    # The calls and their tokens once: input counts the cache reads and writes.
    calls = _checkpoints(matrix, session, "model_call")
    assert [_attrs(c)["input_tokens"] for c in calls] == [7_000, 9_000]
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60)
    # The cost Claude Code reported, as its own result says it.
    assert {_attrs(c)["cost_source"] for c in calls} == {"reported"}
    assert row["cost_usd"] == pytest.approx(result["total_cost_usd"]) and row["cost_usd"] > 0
    # The Bash call, a step with its command.
    [step] = _checkpoints(matrix, session, "tool_call")
    assert _attrs(step)["tool"] == "Bash(echo hello-alone)"
    # The scripted growth, warned at each threshold.
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(session) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]
    assert (row["context_tokens"], row["context_limit"]) == (9_020, 10_000)
    assert anthropic.unexpected == []


def test_under_the_launcher_the_session_ends_complete(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(uuid.uuid4().hex[:12], _hello("launched"))
    task_id = f"cc-launched-{run_id}"
    env = cc.env(tmp_path / "home", matrix, anthropic, run_id)
    # As a user starts it: the launcher asks for tool details and a log export each second.
    for own in ("OTEL_LOG_TOOL_DETAILS", "OTEL_LOGS_EXPORT_INTERVAL"):
        env.pop(own)
    ran = cc.claude(
        cli_bin,
        tmp_path / "work",
        env,
        f"say hello under the launcher ({run_id})",
        launcher={"endpoint": matrix.endpoint, "task-id": task_id},
    )
    assert ran.code == 0 and ran.stdout.strip() == "It printed hello.", ran.said()
    row = _ended(matrix, task_id)
    assert (row["status"], row["task_name"]) == ("complete", f"say hello under the launcher ({run_id})")
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60)
    [step] = _checkpoints(matrix, task_id, "tool_call")
    assert _attrs(step)["tool"] == "Bash(echo hello-launched)"
    assert [r["task_id"] for r in matrix.tasks_of("claude-code") if run_id in (r["task_name"] or "")] == [task_id]


def test_an_api_error_fails_the_session_under_the_launcher_with_the_error(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(
        uuid.uuid4().hex[:12],
        Script(
            [
                tool("Bash", FIRST, command="echo before-the-error"),
                error(400, "invalid_request_error", "scripted: this request was refused"),
            ]
        ),
    )
    task_id = f"cc-failed-{run_id}"
    env = cc.env(tmp_path / "home", matrix, anthropic, run_id)
    ran = cc.claude(
        cli_bin,
        tmp_path / "work",
        env,
        f"fail on the second call ({run_id})",
        launcher={"endpoint": matrix.endpoint, "task-id": task_id},
    )
    assert ran.code == 1, ran.said()
    row = _ended(matrix, task_id)
    assert row["status"] == "error"
    assert "API Error: 400 scripted: this request was refused" in row["error_message"]
    assert (row["input_tokens"], row["output_tokens"]) == (7_000, 40), "the call before the error counts"
    [step] = _checkpoints(matrix, task_id, "tool_call")
    assert _attrs(step)["tool"] == "Bash(echo before-the-error)"
    # Claude Code's api_error records, each a warning on the task.
    warned = [c["message"] or "" for c in matrix.timeline(task_id)]
    assert any(m.startswith("⚠ API error (HTTP 400") for m in warned), warned


def test_the_session_alone_is_left_to_liveness(matrix: Matrix, alone: Alone) -> None:
    # No session end in Claude Code's telemetry: nothing but liveness ends it.
    # That liveness then ends it as lost is serve's, the same for every CLI
    # (tests/receiver/test_live_serve.py: an agent killed mid-task is stalled,
    # then lost); the matrix's window is long (served.LOST_AFTER_S) so that no
    # session held for a person is lost on a loaded machine, and no test waits it out.
    row = left_to_liveness(matrix, cc.task_of(alone.ran), alone.ran)
    assert row["input_tokens"] == 16_000, "counted once"


def test_under_the_launcher_the_pull_request_its_bash_call_made_is_the_tasks(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    """Its ``gh pr create`` (a stand-in ``gh`` first on its PATH) printed the
    new request's address: the launcher reads it from Claude Code's stream
    (the Bash call and its result) and says it on the task."""
    pr, tools = standin.PR, standin.gh(tmp_path)
    made = Script([tool("Bash", FIRST, command="gh pr create --fill", description="open a PR"), text("Opened.", LAST)])
    run_id = anthropic.script(uuid.uuid4().hex[:12], made)
    task_id = f"cc-pr-{run_id}"
    env = cc.env(tmp_path / "home", matrix, anthropic, run_id)
    env["PATH"] = f"{tools}:{env.get('PATH', '')}"
    # Claude Code asks its user before a command it does not know is safe: this one is allowed.
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"permissions": {"allow": ["Bash(gh pr create:*)"]}}))
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = cc.claude(cli_bin, tmp_path / "work", env, f"open a PR ({run_id})", settings=settings, launcher=launcher)
    assert ran.code == 0 and ran.stdout.strip() == "Opened.", ran.said()
    asked = [s for s in anthropic.requests(run_id) if s.path.startswith("/v1/messages")]
    assert pr in " ".join(result_text(r) for r in tool_results(asked[-1].body)), "the call ran"
    row = _ended(matrix, task_id)
    assert (row["status"], row["pull_request"]) == ("complete", pr)
