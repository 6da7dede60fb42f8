"""Gemini CLI 0.61.0, the real CLI, offline against the fake Gemini API,
its telemetry (OTLP/JSON) to a real serve (PostgreSQL, the fake Slack).

Alone, a session is one task named from its prompt, its model calls and
tokens counted once, priced from the tokens (Gemini CLI reports no cost),
its shell call a step, its scripted context growth warned at 70 % and
85 %, and its end seen by liveness (lost). Under ``spanvisor run`` it ends
complete, or failed on an API error (its unsent records are lost then:
Gemini CLI does not flush on an error exit).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import endhooks as eh
from tests.codingagents import gemini_cli as gc
from tests.codingagents import standin
from tests.codingagents.agents import Alone
from tests.codingagents.fake_gemini import fake_gemini, function_responses
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, Usage, error, text, tool
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

# Fresh input, output, cached input per call: 7,040 of the 10,000-token
# window after the first call, 9,020 after the second.
FIRST, LAST = Usage(5_500, 40, 1_500), Usage(7_000, 20, 2_000)
WAIT_S = 120.0


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_gemini()
    try:
        yield fake
    finally:
        fake.close()


def _hello(marker: str) -> Script:
    return Script([tool("run_shell_command", FIRST, command=f"echo hello-{marker}"), text("It printed hello.", LAST)])


def _steps(matrix: Matrix, task_id: str) -> list[str]:
    return [json.loads(c["attributes"])["tool"] for c in matrix.timeline(task_id) if c["source"] == "tool_call"]


def _row(matrix: Matrix, task_id: str, ended: bool = False, output: int = 0) -> dict[str, Any]:
    def got() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        if r is None or r["output_tokens"] < output or (ended and r["ended_at"] is None):
            return None
        return r

    return dict(wait_until(got, WAIT_S, f"task {task_id}"))


@pytest.fixture(scope="module")
def alone(cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory) -> Alone:
    """The session alone, shared by the test that reads it and the file's last
    test, which sees liveness end it: its window runs during the tests between."""
    tmp = tmp_path_factory.mktemp("alone")
    run_id = api.script(uuid.uuid4().hex[:12], _hello("alone"))
    env = gc.env(tmp / "home", matrix, api, run_id)
    return Alone(run_id, gc.gemini(cli_bin, tmp / "work", env, f"say hello with the shell ({run_id})"))


def test_a_session_alone_is_one_named_task_with_its_calls_priced_step_and_warnings(
    matrix: Matrix, api: FakeModelAPI, alone: Alone
) -> None:
    run_id, ran = alone.run_id, alone.ran
    assert ran.code == 0, ran.said()
    session = gc.task_of(ran)
    [shell] = function_responses(api.requests(run_id)[-1].body)
    assert "hello-alone" in json.dumps(shell), "the shell call ran"

    row = _row(matrix, session, output=60)
    assert row["task_name"] == f"say hello with the shell ({run_id})"
    assert [r["task_id"] for r in matrix.tasks_of("gemini-cli") if run_id in (r["task_name"] or "")] == [session]
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60), "cached input inside the input, once"
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0, "priced from the tokens"
    assert _steps(matrix, session) == ["run_shell_command(echo hello-alone)"]
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(session) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]
    assert api.unexpected == []


def test_under_the_launcher_the_session_ends_complete_or_failed(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    ok_run = api.script(uuid.uuid4().hex[:12], _hello("launched"))
    bad_run = api.script(
        uuid.uuid4().hex[:12],
        Script([tool("run_shell_command", FIRST, command="echo before-the-error"), error(400, "", "scripted refusal")]),
    )
    ids = {}
    for run_id, marker in ((ok_run, "ok"), (bad_run, "bad")):
        ids[marker] = task_id = f"gem-{marker}-{run_id}"
        env = gc.env(tmp_path / marker / "home", matrix, api, run_id, telemetry=False)
        launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
        ran = gc.gemini(cli_bin, tmp_path / marker / "work", env, f"launched {marker} ({run_id})", launcher)
        assert (ran.code == 0) == (marker == "ok"), ran.said()
    done = _row(matrix, ids["ok"], ended=True)
    assert (done["status"], done["task_name"]) == ("complete", f"launched ok ({ok_run})")
    assert (done["input_tokens"], done["output_tokens"]) == (16_000, 60)
    assert _steps(matrix, ids["ok"]) == ["run_shell_command(echo hello-launched)"]
    failed = _row(matrix, ids["bad"], ended=True)
    assert failed["status"] == "error" and "exited with code" in failed["error_message"]
    # Gemini CLI exits on an API error without flushing its telemetry: what
    # it had not yet sent (here the shell call too) never arrives. The
    # launcher's end is what says the session failed.


# Last in the file: the session alone exited during the tests above.
def test_the_session_alone_sends_no_end_and_is_left_to_liveness(matrix: Matrix, alone: Alone) -> None:
    # Without its end hooks, no end: liveness ends it (lost), as test_claude_code.py waits for.
    row = eh.left_to_liveness(matrix, gc.task_of(alone.ran), alone.ran)
    assert row["input_tokens"] == 16_000, "counted once"


def test_under_the_launcher_the_pull_request_its_shell_call_made_is_the_tasks(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """Its ``gh pr create`` (a stand-in ``gh`` first on its PATH) printed the
    new request's address: the launcher reads it from Gemini CLI's
    ``stream-json`` (the shell call's ``tool_use`` and ``tool_result``) and
    says it on the task."""
    pr, tools = standin.PR, standin.gh(tmp_path)
    run_id = api.script(
        uuid.uuid4().hex[:12],
        Script([tool("run_shell_command", FIRST, command="gh pr create --fill"), text("Opened.", LAST)]),
    )
    task_id = f"gem-pr-{run_id}"
    env = gc.env(tmp_path / "home", matrix, api, run_id, telemetry=False)
    env["PATH"] = f"{tools}:{env.get('PATH', '')}"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    # As a user starts it: the launcher asks for stream-json (the others here ask for json, one document).
    argv = [a for a in gc.argv(cli_bin, f"open a PR ({run_id})") if a not in ("--output-format", "json")]
    ran = gc.run(argv, env, tmp_path / "work", launcher)
    assert ran.code == 0 and ran.stdout.strip() == "Opened.", ran.said()
    asked = api.requests(run_id)
    assert pr in json.dumps([function_responses(r.body) for r in asked]), "the call ran"
    row = _row(matrix, task_id, ended=True)
    assert (row["status"], row["pull_request"]) == ("complete", pr)
