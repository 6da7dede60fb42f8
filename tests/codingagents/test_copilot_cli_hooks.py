"""GitHub Copilot CLI's ``preToolUse`` hook running ``spanvisor hook
copilot`` against the matrix's serve: a policy's denial the agent obeys
(the command never runs, the model is told why), and a person's approval
from the terminal (``spanvisor approve``) and from a signed Slack click,
each letting the very command run.

The hook is live where Copilot CLI's telemetry is not: its ruling and its
request reach serve while the session runs (the spans come at the exit).
Copilot CLI hands its hooks ``CLAUDE_PROJECT_DIR`` too: the hook knows its
CLI from its argument, never from the environment."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import copilot_cli as cp
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import POLICY, approve_from, pending_with, steps
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import APPROVER, Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

WAIT_S = 120.0


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def _hooked(tmp_path: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, telemetry: bool = True) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.format(shell=cp.SHELL))
    env = cp.env(tmp_path / "home", api, run_id, matrix if telemetry else None)
    cp.add_hook(tmp_path / "home")
    env.update(SPANVISOR_HOOK_POLICY=str(policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, SPANVISOR_HEARTBEAT="1s")
    return env


def _answers(api: FakeModelAPI, run_id: str) -> list[str]:
    return tool_results(turns(api, run_id)[-1])


def test_a_denial_by_policy_is_obeyed_and_the_model_is_told_why(
    matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool(cp.SHELL, command="rm -rf build", description="clean"), text("I left it.")]))
    env = _hooked(tmp_path, matrix, api, run_id)
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "keep.txt").write_text("still here")
    ran = cp.copilot(work, env, f"clean the build folder ({run_id})")
    assert ran.code == 0, ran.said()
    session = cp.task_of(ran)
    assert (work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
    [denied] = _answers(api, run_id)
    assert "spanvisor: deleting is not allowed here" in denied, denied

    def ruling() -> dict[str, Any] | None:
        rows = [c for c in matrix.timeline(session) if c["source"] == "event"]
        return rows[0] if rows else None

    got = wait_until(ruling, WAIT_S, "the hook's ruling on the task")
    assert got["message"] == "bash: rm -rf build: denied by policy:no-deleting"
    assert matrix.interventions(session) == [], "a policy decides: no person"
    row = matrix.task(session)
    assert row is not None and row["task_name"] == f"clean the build folder ({run_id})", "one task for the session"


@pytest.mark.parametrize("how", ["cli", "slack"])
def test_a_persons_approval_lets_the_command_run(
    how: str, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """From the terminal on a session alone (its task is Qwen Code's session
    id), from Slack under the launcher (the launcher's task)."""
    run_id = uuid.uuid4().hex[:12]
    command = f"echo approved-{how}-{run_id}"
    api.script(run_id, Script([tool(cp.SHELL, command=command, description="say hello"), text("Done.")]))
    launched = how == "slack"
    env = _hooked(tmp_path, matrix, api, run_id, telemetry=not launched)
    launcher = {"endpoint": matrix.endpoint, "task-id": f"copilot-approve-{run_id}"} if launched else None
    running = cp.copilot_started(tmp_path / "work", env, f"say hello once approved ({run_id})", launcher)
    try:
        req = wait_until(lambda: pending_with(matrix, run_id, running), WAIT_S, "the approval request", every=0.2)[0]
        assert req["question"] == f"Allow bash: {command}?"
        task_id = approve_from(how, matrix, req)
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0, ran.said()
    if launched:
        assert task_id == f"copilot-approve-{run_id}"
    else:
        assert task_id == cp.task_of(ran), "alone, the request is on Copilot CLI's session"
    [shell] = _answers(api, run_id)
    assert f"approved-{how}-{run_id}" in shell, "the command ran"
    [row] = wait_until(lambda: matrix.interventions(task_id), WAIT_S, "the human_interventions row")
    assert (row["action"], row["outcome"], row["source"]) == ("approve", "applied", how)
    assert row["actor"] == (APPROVER if launched else "bob")
    assert wait_until(lambda: steps(matrix, task_id), WAIT_S, "the step") == [f"bash({command})"]
