"""pi 0.73.1, the real CLI, offline against the fake Chat Completions API
(a provider of its ``models.json``).

pi sends no telemetry. Under ``spanvisor run`` the launcher reads its
``--mode json`` lines instead (asking for them when the user did not, and
printing the answer its text output would): the session is one task
named from its prompt, its model calls and tokens once (cached input
inside the input), priced from the tokens (pi prints a cost of 0 for a
model it has no price for), its shell call a step, its context growth
warned at 70 % and 85 %, live as it runs; it ends complete, or failed with
the API's error (pi exits 0 either way in json mode: the lines say which).
Alone, only the gate's extension speaks of the session (test_pi_hooks.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import pi_cli as pc
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
    script = Script([tool(pc.SHELL, FIRST, command="echo hello-launched"), text("It printed hello.", LAST)])
    run_id = api.script(uuid.uuid4().hex[:12], script)
    task_id = f"pi-launched:{run_id}/1"
    env = pc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    prompt = f"say hello with the shell ({run_id}), the key is sk-proj-SECRETSECRET1234"
    # As a user starts it: no --mode (the launcher asks for json and prints the answer).
    ran = pc.pi(cli_bin, tmp_path / "work", env, prompt, launcher, mode=None)
    assert ran.code == 0 and ran.stdout.strip() == "It printed hello.", ran.said()
    assert "hello-launched" in json.dumps(tool_results(turns(api, run_id)[-1])), "the shell call ran"

    row = _row(matrix, task_id, ended=True, output=60)
    assert (row["status"], row["agent_id"]) == ("complete", "pi")
    assert row["task_name"] == f"say hello with the shell ({run_id}), the key is sk-proj-****"
    calls = [c for c in matrix.timeline(task_id) if c["source"] == "model_call"]
    assert [(_attrs(c)["input_tokens"], _attrs(c)["output_tokens"]) for c in calls] == [(7_000, 40), (9_000, 20)]
    assert (row["input_tokens"], row["output_tokens"], row["model"]) == (16_000, 60, pc.MODEL)
    assert {_attrs(c)["cost_source"] for c in calls} == {"genai-prices"}
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0
    assert steps(matrix, task_id) == ["bash(echo hello-launched)"]
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(task_id) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]


def test_an_api_error_fails_the_session_under_the_launcher_with_the_apis_error(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([error(401, "invalid_api_key", "scripted: bad key")]))
    task_id = f"pi-failed-{run_id}"
    env = pc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    # As a user starts it (no --mode): the launcher exits 1, as pi's text output does on a failed run.
    ran = pc.pi(cli_bin, tmp_path / "work", env, f"fail at once ({run_id})", launcher, mode=None)
    assert ran.code == 1 and "scripted: bad key" in ran.stderr, ran.said()
    row = _row(matrix, task_id, ended=True)
    assert row["status"] == "error", row
    assert "scripted: bad key" in row["error_message"], row
    warned = [c["message"] or "" for c in matrix.timeline(task_id)]
    assert any(m.startswith("⚠ API error") and "scripted: bad key" in m for m in warned), warned
