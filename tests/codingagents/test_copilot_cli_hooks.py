"""GitHub Copilot CLI's ``preToolUse`` hook running ``spanvisor hook
copilot`` against the matrix's serve, in one real session: a policy's
denial the agent obeys (the command never runs, the model is told why), a
person's approval from the terminal (``spanvisor approve``) and another
by alice's signed Slack click, each letting the very command run, and an
error of the hook (its policy file turned to junk) blocking the call.

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
from tests.codingagents.hooked import GateSession, drive_twice, ruling
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def test_the_gate_denies_by_policy_asks_people_in_the_terminal_and_slack_and_blocks_when_the_hook_fails(
    matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    gate = GateSession(uuid.uuid4().hex[:12], tmp_path / "work", tmp_path / "policy.toml")
    gate.prepare(cp.SHELL)
    clicked = f"echo clicked-{gate.run_id}"
    commands = ["rm -rf build", gate.approved, clicked, "touch ran.txt"]
    api.script(gate.run_id, Script([*(tool(cp.SHELL, command=c, description="tidy") for c in commands), text("Done.")]))
    env = cp.env(tmp_path / "home", api, gate.run_id, matrix)
    cp.add_hook(tmp_path / "home")
    env.update(SPANVISOR_HOOK_POLICY=str(gate.policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint)
    running = cp.copilot_started(gate.work, env, f"tidy up ({gate.run_id})")
    ran, asked = drive_twice(matrix, gate, running, clicked)
    assert [r["question"] for r in asked] == [f"Allow bash: {c}?" for c in commands[1:3]]
    session = cp.task_of(ran)
    assert [r["task_id"] for r in asked] == [session, session], "alone, the requests are on Copilot CLI's session"
    denied, approved, by_click, failed = tool_results(turns(api, gate.run_id)[-1])
    assert f"clicked-{gate.run_id}" in by_click and "spanvisor" not in by_click, by_click
    gate.check(matrix, ran, [denied, approved, failed], session, cp.SHELL, clicked=True)
    assert ruling(matrix, session) == "bash: rm -rf build: denied by policy:no-deleting"
    row = matrix.task(session)
    assert row is not None and row["task_name"] == f"tidy up ({gate.run_id})", "one task for the session"
