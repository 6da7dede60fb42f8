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

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.clis import registry
from tests.codingagents import copilot_cli as cp
from tests.codingagents.agents import hook_command
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


def test_a_call_that_reaches_copilots_permission_service_meets_the_gate_there(
    api: FakeModelAPI, tmp_path: Path
) -> None:
    """Issue 65: a call whose ``preToolUse`` hooks gave no answer (the gate's
    timed out: Copilot CLI then lets the call go on) next meets the
    ``permissionRequest`` hooks, before Copilot CLI's own permission service
    and even under ``--allow-all-tools``. Their input names itself
    (``hookName``) and says ``toolInput``, not ``toolArgs``, and the answer
    is ``{"behavior": …}``: read as a preToolUse call, the gate judged an
    empty command and its answer was ignored. Here only the gate's
    ``permissionRequest`` entry (as ``spanvisor gate install`` writes it) is
    set: the policy's denial stops ``rm``, its allow lets ``touch`` run."""
    run_id = uuid.uuid4().hex[:12]
    work, home = tmp_path / "work", tmp_path / "home"
    (work / "build").mkdir(parents=True)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'default = "deny"\n'
        '[[rule]]\nname = "no-deleting"\ncommand = ["rm *"]\ndecision = "deny"\n'
        '[[rule]]\nname = "touching"\ncommand = ["touch *"]\ndecision = "allow"\n'
    )
    commands = ["rm -rf build", "touch ran.txt"]
    api.script(run_id, Script([*(tool(cp.SHELL, command=c, description="tidy") for c in commands), text("Done.")]))
    env = cp.env(home, api, run_id)
    env.update(SPANVISOR_HOOK_POLICY=str(policy), SPANVISOR_HOOK_DELIVERY="off")
    written = json.loads(registry.need("copilot").hook_setup(hook_command("copilot"), 200).text)  # type: ignore[union-attr]
    only = {"version": 1, "hooks": {"permissionRequest": written["hooks"]["permissionRequest"]}}
    (home / ".copilot" / "hooks").mkdir(parents=True, exist_ok=True)
    (home / ".copilot" / "hooks" / "spanvisor.json").write_text(json.dumps(only))
    ran = cp.copilot(work, env, f"tidy up ({run_id})")
    denied, allowed = tool_results(turns(api, run_id)[-1])
    assert (work / "build").is_dir(), f"rm ran: {denied}\n{ran.said()}"
    assert "no-deleting" in denied, denied
    assert (work / "ran.txt").exists(), f"touch did not run: {allowed}\n{ran.said()}"
