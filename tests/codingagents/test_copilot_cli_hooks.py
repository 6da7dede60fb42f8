"""GitHub Copilot CLI's ``preToolUse`` hook running ``spanvisor hook
copilot`` against the matrix's serve, in one real session: a policy's
denial the agent obeys (the command never runs, the model is told why), a
person's approval from the terminal (``spanvisor approve``) letting the
very command run, and an error of the hook (its policy file turned to junk)
blocking the call.

The hook is live where Copilot CLI's telemetry is not: its ruling and its
request reach serve while the session runs (the spans come at the exit).
Copilot CLI runs a call whose hook outlives its ``timeoutSec``: the hook
answers before it. It hands its hooks ``CLAUDE_PROJECT_DIR`` too: the hook
knows its CLI from its argument, never from the environment."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import copilot_cli as cp
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import GateSession, ruling
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def test_the_gate_denies_by_policy_asks_a_person_and_blocks_when_the_hook_fails(
    matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    gate = GateSession(uuid.uuid4().hex[:12], tmp_path / "work", tmp_path / "policy.toml")
    gate.prepare(cp.SHELL)
    api.script(gate.run_id, gate.script(cp.SHELL, description="tidy"))
    env = cp.env(tmp_path / "home", api, gate.run_id, matrix)
    cp.add_hook(tmp_path / "home")
    env.update(SPANVISOR_HOOK_POLICY=str(gate.policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint)
    running = cp.copilot_started(gate.work, env, f"tidy up ({gate.run_id})")
    ran, req = gate.drive(matrix, running)
    assert req["question"] == f"Allow bash: {gate.approved}?"
    session = cp.task_of(ran)
    assert req["task_id"] == session, "alone, the request is on Copilot CLI's session"
    gate.check(matrix, ran, tool_results(turns(api, gate.run_id)[-1]), session, cp.SHELL)
    assert ruling(matrix, session) == "bash: rm -rf build: denied by policy:no-deleting"
    row = matrix.task(session)
    assert row is not None and row["task_name"] == f"tidy up ({gate.run_id})", "one task for the session"
