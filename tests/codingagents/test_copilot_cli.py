"""GitHub Copilot CLI 1.0.102, the real CLI (its platform binary), offline
against the fake Chat Completions API as its own model provider, its OTel
GenAI spans (OTLP/HTTP protobuf) to a real serve (PostgreSQL, the fake
Slack).

Copilot CLI sends no log records, only spans, and every one of them when
it exits. Alone, its session becomes one task then, whole: named from its
prompt, its model calls and tokens counted once (cached input inside the
input), priced from the tokens (its own ``github.copilot.cost`` is no
dollar figure), its shell call a step with its command, its context
growth warned at 70 % and 85 %, and its end seen by liveness (lost).
Under ``spanvisor run`` the task is live from the start (the launcher's
start record and heartbeats) though its calls and steps still come at the
exit; it ends complete, or failed with Copilot CLI's own error on a 401.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import copilot_cli as cp
from tests.codingagents import endhooks as eh
from tests.codingagents.agents import Alone
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import steps
from tests.codingagents.script import Script, Usage, error, held, text, tool
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


def _hello(marker: str, hold_s: float = 0.0) -> Script:
    first = tool(cp.SHELL, FIRST, command=f"echo hello-{marker}", description="say hello")
    return Script([held(first, hold_s) if hold_s else first, text("It printed hello.", LAST)])


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


@pytest.fixture(scope="module")
def alone(matrix: Matrix, api: FakeModelAPI, tmp_path_factory: pytest.TempPathFactory) -> Alone:
    """The session alone, shared by the test that reads it and the file's last
    test, which sees liveness end it: its window runs during the tests between."""
    tmp = tmp_path_factory.mktemp("alone")
    run_id = api.script(uuid.uuid4().hex[:12], _hello("alone"))
    env = cp.env(tmp / "home", api, run_id, matrix)
    prompt = f"say hello with the shell ({run_id}), the key is sk-proj-SECRETSECRET1234"
    return Alone(run_id, cp.copilot(tmp / "work", env, prompt))


def test_a_session_alone_is_one_named_task_at_its_exit_with_its_calls_priced_step_and_warnings(
    matrix: Matrix, api: FakeModelAPI, alone: Alone
) -> None:
    run_id, ran = alone.run_id, alone.ran
    assert ran.code == 0 and cp.said(ran)[-1] == "It printed hello.", ran.said()
    session = cp.task_of(ran)
    assert "hello-alone" in json.dumps(tool_results(turns(api, run_id)[-1])), "the shell call ran"

    row = _row(matrix, session, output=60)
    # Named from its prompt (the date Copilot CLI puts before it left out), redacted.
    assert row["task_name"] == f"say hello with the shell ({run_id}), the key is sk-proj-****"
    assert [r["task_id"] for r in matrix.tasks_of("github-copilot") if run_id in (r["task_name"] or "")] == [session]
    calls = [c for c in matrix.timeline(session) if c["source"] == "model_call"]
    assert [(_attrs(c)["input_tokens"], _attrs(c)["output_tokens"]) for c in calls] == [(7_000, 40), (9_000, 20)]
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60)
    assert {_attrs(c)["cost_source"] for c in calls} == {"genai-prices"}
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0
    assert steps(matrix, session) == ["bash(echo hello-alone)"]
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(session) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]
    assert api.unexpected == []


def test_under_the_launcher_the_task_is_live_at_once_and_ends_complete(
    matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], _hello("launched", hold_s=6.0))
    task_id = f"copilot-launched:{run_id}/1"
    env = cp.env(tmp_path / "home", api, run_id)  # no telemetry of the user's: the launcher aims it at serve
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    running = cp.copilot_started(tmp_path / "work", env, f"say hello under the launcher ({run_id})", launcher)
    try:
        # While the model holds its answer: the task is open and named, nothing of Copilot's own yet.
        live = wait_until(lambda: matrix.task(task_id), WAIT_S, "the launcher's task while Copilot CLI runs")
        assert running.proc.poll() is None, "still running"
        assert (live["task_name"], live["ended_at"], live["output_tokens"]) == (
            f"say hello under the launcher ({run_id})",
            None,
            0,
        )
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0, ran.said()
    row = _row(matrix, task_id, ended=True, output=60)
    assert (row["status"], row["agent_id"]) == ("complete", "github-copilot")
    assert (row["input_tokens"], row["output_tokens"]) == (16_000, 60)
    assert steps(matrix, task_id) == ["bash(echo hello-launched)"]
    assert [r["task_id"] for r in matrix.tasks_of("github-copilot") if run_id in (r["task_name"] or "")] == [task_id]


def test_an_api_error_fails_the_session_under_the_launcher_with_copilots_error(
    matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    # A 401, not a 500: Copilot CLI retries a 500 for about 19 s.
    run_id = api.script(uuid.uuid4().hex[:12], Script([error(401, "invalid_api_key", "scripted: bad key")]))
    task_id = f"copilot-failed-{run_id}"
    env = cp.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = cp.copilot(tmp_path / "work", env, f"fail at once ({run_id})", launcher, fmt=None)
    assert ran.code == 1, ran.said()
    row = _row(matrix, task_id, ended=True)
    assert row["status"] == "error"
    assert "Authentication failed" in row["error_message"] and "401" in row["error_message"], row
    warned = [c["message"] or "" for c in matrix.timeline(task_id)]
    assert any(m.startswith("⚠ API error") for m in warned), warned


# Last in the file, and to stay so: pytest runs a file's tests in their order,
# so the end hook window of the session alone runs through the tests above.
def test_the_session_alone_is_then_left_to_liveness_with_its_calls(matrix: Matrix, alone: Alone) -> None:
    # Its calls (sent as it exits) are the task's, and no end came: still
    # open HOOK_END_S after the CLI exited, for liveness to end it lost (as
    # test_claude_code.py waits for: serve's mechanism, the same for every CLI).
    task_id = cp.task_of(alone.ran)
    eh.left_to_liveness(matrix, task_id, alone.ran)
    wait_until(lambda: (r := matrix.task(task_id)) and r["input_tokens"] == 16_000, WAIT_S, "its calls on the task")
