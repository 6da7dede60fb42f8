"""Codex CLI 0.169.0, the real CLI, offline against the fake Responses API,
its telemetry (OTLP/HTTP protobuf) to a real serve (PostgreSQL, the fake
Slack).

Alone, a session is one task named from its prompt (the agent its
``service.name``), its model calls and tokens counted once (cached input
inside the input, reasoning inside the output), priced from the tokens
(Codex reports no cost), its shell call a step with its command, its
scripted context growth warned at 70 % and 85 %, and its end seen by
liveness (lost): Codex says nothing of a session's end. Its own ~700
internal spans make no second task. Under ``spanvisor run`` it ends
complete, or failed with the API's error read from its ``--json`` events
(Codex exits on an API error without sending its last batch of records),
and a pull request its shell call made is the task's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import codex_cli as cx
from tests.codingagents import endhooks as eh
from tests.codingagents import standin
from tests.codingagents.agents import Alone
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.fake_openai import Tokens, fake_openai, function_outputs
from tests.codingagents.script import Script, error, text, tool
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

# Fresh input, output, cached input, (no cache writes), reasoning per call:
# 7,040 of the 10,000-token window after the first call, 9,020 after the
# second; the reasoning is part of the output.
FIRST, LAST = Tokens(5_500, 40, 1_500, 0, 10), Tokens(7_000, 20, 2_000, 0, 5)
WAIT_S = 120.0


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_openai()
    try:
        yield fake
    finally:
        fake.close()


def _hello(marker: str) -> Script:
    return Script([tool("exec_command", FIRST, cmd=f"echo hello-{marker}"), text("It printed hello.", LAST)])


def _attrs(row: dict[str, Any]) -> dict[str, Any]:
    a = row["attributes"]
    return dict(json.loads(a) if isinstance(a, str) else a)


def _checkpoints(matrix: Matrix, task_id: str, source: str) -> list[dict[str, Any]]:
    return [c for c in matrix.timeline(task_id) if c["source"] == source]


def _steps(matrix: Matrix, task_id: str) -> list[str]:
    return [_attrs(c)["tool"] for c in _checkpoints(matrix, task_id, "tool_call")]


def _row(matrix: Matrix, task_id: str, ended: bool = False, output: int = 0) -> dict[str, Any]:
    def got() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        if r is None or r["output_tokens"] < output or (ended and r["ended_at"] is None):
            return None
        return r

    return dict(wait_until(got, WAIT_S, f"task {task_id}"))


def _responses(api: FakeModelAPI, run_id: str) -> list[Any]:
    return [s.body for s in api.requests(run_id) if s.path == "/v1/responses"]


@pytest.fixture(scope="module")
def alone(cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory) -> Alone:
    """The session alone, shared by the test that reads it and the file's last
    test, which sees liveness end it: its window runs during the tests between."""
    tmp = tmp_path_factory.mktemp("alone")
    run_id = api.script(uuid.uuid4().hex[:12], _hello("alone"))
    env = cx.env(tmp / "home", api, run_id, matrix)
    prompt = f"say hello with the shell ({run_id}), the key is sk-proj-SECRETSECRET1234"
    return Alone(run_id, cx.codex(cli_bin, tmp / "work", env, prompt))


def test_a_session_alone_is_one_named_task_with_its_calls_priced_step_and_warnings(
    matrix: Matrix, api: FakeModelAPI, alone: Alone
) -> None:
    run_id, ran = alone.run_id, alone.ran
    assert ran.code == 0 and cx.said(ran) == ["It printed hello."], ran.said()
    session = cx.task_of(ran)
    [usage] = [e["usage"] for e in cx.events(ran, "turn.completed")]
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (16_000, 3_500, 60)
    assert usage["reasoning_output_tokens"] == 15
    [shell] = function_outputs(_responses(api, run_id)[-1])
    assert "hello-alone" in shell, "the shell call ran"

    row = _row(matrix, session, output=60)
    # One task for the session, keyed by Codex's thread id, named from the prompt (redacted).
    assert row["task_name"] == f"say hello with the shell ({run_id}), the key is sk-proj-****"
    assert [r["task_id"] for r in matrix.tasks_of("codex_exec") if run_id in (r["task_name"] or "")] == [session]
    assert (row["agent_id"], row["model"]) == ("codex_exec", cx.MODEL)
    # The calls and their tokens once: cached input inside the input, reasoning inside the output.
    calls = _checkpoints(matrix, session, "model_call")
    assert [(_attrs(c)["input_tokens"], _attrs(c)["output_tokens"]) for c in calls] == [(7_000, 40), (9_000, 20)]
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60)
    # Priced from the tokens: Codex reports no cost.
    assert {_attrs(c)["cost_source"] for c in calls} == {"genai-prices"}
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0
    # The shell call, a step with its command.
    assert _steps(matrix, session) == ["exec_command(echo hello-alone)"]
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(session) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]
    assert (row["context_tokens"], row["context_limit"]) == (9_020, 10_000)
    assert api.unexpected == []


def test_under_the_launcher_the_session_ends_complete(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], _hello("launched"))
    task_id = f"codex-launched-{run_id}"
    # No [otel] of the user's own: the launcher aims Codex's telemetry at serve.
    env = cx.env(tmp_path / "home", api, run_id)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = cx.codex(cli_bin, tmp_path / "work", env, f"say hello under the launcher ({run_id})", launcher=launcher)
    assert ran.code == 0 and cx.said(ran) == ["It printed hello."], ran.said()
    row = _row(matrix, task_id, ended=True, output=60)
    assert (row["status"], row["task_name"]) == ("complete", f"say hello under the launcher ({run_id})")
    assert (row["agent_id"], row["model"]) == ("codex_exec", cx.MODEL)
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60)
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0
    assert _steps(matrix, task_id) == ["exec_command(echo hello-launched)"]
    assert [r["task_id"] for r in matrix.tasks_of("codex_exec") if run_id in (r["task_name"] or "")] == [task_id]
    assert api.unexpected == []


def test_an_api_error_fails_the_session_under_the_launcher_with_the_error(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(
        uuid.uuid4().hex[:12],
        Script(
            [
                tool("exec_command", FIRST, cmd="echo before-the-error"),
                error(400, "invalid_request_error", "scripted: this request was refused"),
            ]
        ),
    )
    task_id = f"codex-failed-{run_id}"
    env = cx.env(tmp_path / "home", api, run_id)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = cx.codex(cli_bin, tmp_path / "work", env, f"fail on the second call ({run_id})", launcher=launcher)
    assert ran.code == 1, ran.said()
    [failed] = cx.events(ran, "turn.failed")
    assert "scripted: this request was refused" in failed["error"]["message"]
    row = _row(matrix, task_id, ended=True)
    assert (row["status"], row["task_name"]) == ("error", f"fail on the second call ({run_id})")
    # The API's own message, read from the --json error event, with the exit code.
    assert row["error_message"] == "invalid_request_error: scripted: this request was refused (exit code 1)"
    # Codex exits on an API error without sending its last batch of
    # records: the launcher's end is what says the session failed.


# Last in the file: the session alone exited during the tests above.
def test_the_session_alone_sends_no_end_and_is_left_to_liveness(matrix: Matrix, alone: Alone) -> None:
    # No session end in Codex's telemetry: it ends by liveness (lost), as
    # test_claude_code.py waits for.
    row = eh.left_to_liveness(matrix, cx.task_of(alone.ran), alone.ran)
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60), "counted once"


def test_under_the_launcher_the_pull_request_its_command_made_is_the_tasks(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """Its ``gh pr create`` (a stand-in ``gh`` first on its PATH) printed the
    new request's address: the launcher reads it from Codex's ``--json``
    events (the command's ``command_execution`` item) and says it on the task."""
    pr, tools = standin.PR, standin.gh(tmp_path)
    made = Script([tool("exec_command", FIRST, cmd="gh pr create --fill"), text("Opened.", LAST)])
    run_id = api.script(uuid.uuid4().hex[:12], made)
    task_id = f"codex-pr-{run_id}"
    env = cx.env(tmp_path / "home", api, run_id)
    # Codex runs it in a login shell (bash -lc), whose PATH the profile sets.
    (tmp_path / "home" / ".bash_profile").write_text(f'export PATH="{tools}:$PATH"\n')
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = cx.codex(cli_bin, tmp_path / "work", env, f"open a PR ({run_id})", launcher=launcher)
    assert ran.code == 0 and cx.said(ran) == ["Opened."], ran.said()
    [item] = [e["item"] for e in cx.events(ran, "item.completed") if e["item"].get("type") == "command_execution"]
    assert "gh pr create --fill" in item["command"] and pr in item["aggregated_output"], item
    row = _row(matrix, task_id, ended=True, output=60)
    assert (row["status"], row["pull_request"]) == ("complete", pr)
