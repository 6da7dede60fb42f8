"""OpenCode 1.18.33, the real CLI, offline against the fake Chat
Completions API (a provider of its config).

OpenCode's own OpenTelemetry (``experimental.openTelemetry``) is no
source: hundreds of spans of its internals a run, its last batch lost at
exit. Under ``spanvisor run`` the launcher reads ``run --format json``
instead (asking for it when the user did not, and printing what the text
output would): the session is one task named from its prompt, its model
calls and tokens once (cached input inside the input), priced from the
tokens (OpenCode prints a cost of 0 for a model it has no price for), its
shell call a step, its context growth warned at 70 % and 85 %, live as it
runs; it ends complete, or failed with the API's error on a 401. Alone,
only the gate's plugin speaks of the session (test_opencode_hooks.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import opencode_cli as oc
from tests.codingagents import standin
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import steps
from tests.codingagents.script import Script, Usage, error, text, tool
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

FIRST, LAST = Usage(5_500, 40, 1_500), Usage(7_000, 20, 2_000)
WAIT_S = 120.0


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def _hello(marker: str) -> Script:
    return Script(
        [
            tool(oc.SHELL, FIRST, command=f"echo hello-{marker}", description="say hello"),
            text("It printed hello.", LAST),
        ]
    )


def _attrs(row: dict[str, Any]) -> dict[str, Any]:
    a = row["attributes"]
    return dict(json.loads(a) if isinstance(a, str) else a)


def _row(matrix: Matrix, task_id: str, ended: bool = False, output: int = 0) -> dict[str, Any]:
    def got() -> dict[str, Any] | None:
        r = matrix.task(task_id)
        if r is None or r["output_tokens"] < output or (ended and r["ended_at"] is None):
            return None
        return r

    return dict(wait_until(got, WAIT_S, f"task {task_id}"))


def test_under_the_launcher_a_session_is_one_named_task_with_its_calls_priced_step_and_warnings_then_complete(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], _hello("launched"))
    task_id = f"opencode-launched:{run_id}/1"
    env = oc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    prompt = f"say hello with the shell ({run_id}), the key is sk-proj-SECRETSECRET1234"
    # As a user starts it: no --format (the launcher asks for json and prints the text).
    ran = oc.opencode(cli_bin, tmp_path / "work", env, prompt, launcher, fmt=None)
    assert ran.code == 0 and ran.stdout.strip() == "It printed hello.", ran.said()
    assert "hello-launched" in json.dumps(tool_results(turns(api, run_id)[-1])), "the shell call ran"

    row = _row(matrix, task_id, ended=True, output=60)
    assert (row["status"], row["agent_id"]) == ("complete", "opencode")
    assert row["task_name"] == f"say hello with the shell ({run_id}), the key is sk-proj-****"
    calls = [c for c in matrix.timeline(task_id) if c["source"] == "model_call"]
    assert [(_attrs(c)["input_tokens"], _attrs(c)["output_tokens"]) for c in calls] == [(7_000, 40), (9_000, 20)]
    assert (row["input_tokens"], row["output_tokens"], row["model"]) == (16_000, 60, oc.MODEL)
    assert {_attrs(c)["cost_source"] for c in calls} == {"genai-prices"}
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0
    assert steps(matrix, task_id) == ["bash(echo hello-launched)"]
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(task_id) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]
    assert [r["task_id"] for r in matrix.tasks_of("opencode") if run_id in (r["task_name"] or "")] == [task_id]


def test_an_api_error_fails_the_session_under_the_launcher_with_the_apis_error(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    # A 401, not a 500: OpenCode retries a 500 for about 72 s.
    run_id = api.script(uuid.uuid4().hex[:12], Script([error(401, "invalid_api_key", "scripted: bad key")]))
    task_id = f"opencode-failed-{run_id}"
    env = oc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = oc.opencode(cli_bin, tmp_path / "work", env, f"fail at once ({run_id})", launcher)
    assert ran.code == 1, ran.said()
    row = _row(matrix, task_id, ended=True)
    assert row["status"] == "error"
    assert "scripted: bad key" in row["error_message"] and "HTTP 401" in row["error_message"], row
    warned = [c["message"] or "" for c in matrix.timeline(task_id)]
    assert any(m.startswith("⚠ API error (HTTP 401)") for m in warned), warned


def test_under_the_launcher_the_pull_request_its_shell_call_made_is_the_tasks(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """Its ``gh pr create`` (a stand-in ``gh`` first on its PATH) printed the
    new request's address: the launcher reads it from OpenCode's ``json``
    lines (the finished ``bash`` call's ``tool_use``) and says it on the task."""
    pr, tools = standin.PR, standin.gh(tmp_path)
    made = Script(
        [tool(oc.SHELL, FIRST, command="gh pr create --fill", description="open a PR"), text("Opened.", LAST)]
    )
    run_id = api.script(uuid.uuid4().hex[:12], made)
    task_id = f"opencode-pr:{run_id}/1"
    env = oc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"
    env["PATH"] = f"{tools}:{env.get('PATH', '')}"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = oc.opencode(cli_bin, tmp_path / "work", env, f"open a PR ({run_id})", launcher, fmt=None)
    assert ran.code == 0 and ran.stdout.strip() == "Opened.", ran.said()
    assert pr in json.dumps(tool_results(turns(api, run_id)[-1])), "the shell call ran"
    row = _row(matrix, task_id, ended=True, output=60)
    assert (row["status"], row["pull_request"]) == ("complete", pr)
