"""OpenCode has no command hooks: spanvisor's plugin
(``spanvisor/_assets/opencode/spanvisor-gate.js``) asks ``spanvisor hook
opencode`` before every tool call. In one real session, with the plugin set
up as the docs say without the launcher (``OPENCODE_CONFIG_CONTENT`` naming
the file): a policy's denial the agent obeys (the command never runs, the
model is told why), a person's approval from the terminal (``spanvisor
approve``) and another by alice's signed Slack click, each letting the very
command run, and an error of the hook (its policy file turned to junk)
blocking the call. In a second, the plugin with
no spanvisor to run blocks the call, not runs it.

OpenCode runs every tool ungated when a plugin fails to load: the launcher
says so when it sees a tool call its gate was never asked about, and
``spanvisor check`` finds a plugin entry whose file is gone (tests/cli)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import opencode_cli as oc
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import GateSession, drive_twice, ruling
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def test_the_gate_denies_by_policy_asks_people_in_the_terminal_and_slack_and_blocks_when_the_hook_fails(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    gate = GateSession(uuid.uuid4().hex[:12], tmp_path / "work", tmp_path / "policy.toml")
    gate.prepare(oc.SHELL)
    clicked = f"echo clicked-{gate.run_id}"
    commands = ["rm -rf build", gate.approved, clicked, "touch ran.txt"]
    api.script(gate.run_id, Script([*(tool(oc.SHELL, command=c, description="tidy") for c in commands), text("Done.")]))
    env = oc.with_plugin(oc.env(tmp_path / "home", api, gate.run_id))
    env.update(SPANVISOR_HOOK_POLICY=str(gate.policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint)
    running = oc.opencode_started(cli_bin, gate.work, env, f"tidy up ({gate.run_id})")
    ran, asked = drive_twice(matrix, gate, running, clicked)
    assert [r["question"] for r in asked] == [f"Allow bash: {c}?" for c in commands[1:3]]
    session = oc.task_of(ran)
    assert [r["task_id"] for r in asked] == [session, session], "alone, the requests are on OpenCode's session"
    denied, approved, by_click, failed = tool_results(turns(api, gate.run_id)[-1])
    assert f"clicked-{gate.run_id}" in by_click and "spanvisor" not in by_click, by_click
    gate.check(matrix, ran, [denied, approved, failed], session, None, clicked=True)
    assert [p["state"]["status"] for p in oc.tools(ran)] == ["error", "completed", "completed", "error"]
    assert ruling(matrix, session) == "bash: rm -rf build: denied by policy:no-deleting"


def test_with_no_spanvisor_to_run_the_plugin_blocks_the_call(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex[:12]
    api.script(run_id, Script([tool(oc.SHELL, command="touch ran.txt", description="touch"), text("Done.")]))
    env = oc.with_plugin(oc.env(tmp_path / "home", api, run_id))
    env["SPANVISOR_BIN"] = str(tmp_path / "no-such-spanvisor")
    work = tmp_path / "work"
    ran = oc.opencode(cli_bin, work, env, f"touch it ({run_id})")
    assert ran.code == 0, ran.said()
    assert not (work / "ran.txt").exists(), "the call ran without the gate"
    [blocked] = tool_results(turns(api, run_id)[-1])
    assert "spanvisor hook could not be run" in blocked and "denied" in blocked, blocked


def test_under_the_launcher_a_plugin_opencode_did_not_load_is_said_on_the_task(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """``OPENCODE_PURE`` (OpenCode without external plugins) leaves the gate's
    plugin unloaded: OpenCode runs the call ungated, and the launcher says so
    on stderr and on the task instead of letting it pass in silence."""
    run_id = uuid.uuid4().hex[:12]
    api.script(run_id, Script([tool(oc.SHELL, command="echo ungated", description="echo"), text("Done.")]))
    env = oc.env(tmp_path / "home", api, run_id)
    env.update(OPENCODE_PURE="1", SPANVISOR_HEARTBEAT="1s")
    task_id = f"opencode-unloaded-{run_id}"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id, "gate": ""}
    ran = oc.opencode(cli_bin, tmp_path / "work", env, f"echo it ({run_id})", launcher)
    assert ran.code == 0, ran.said()
    assert "gate never loaded" in ran.stderr, ran.said()
    said = wait_until(
        lambda: [c["message"] for c in matrix.timeline(task_id) if "never loaded" in str(c["message"])],
        120.0,
        "the warning",
    )
    assert set(said) == {"⚠ OpenCode ran a tool call but spanvisor's gate never loaded: its tool calls are NOT gated"}
