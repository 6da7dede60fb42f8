"""Kilo 7.7.7 (``@kilocode/cli``), the real CLI, offline against the fake
Chat Completions API (a provider of its config). A fork of OpenCode that
loads the same plugins: spanvisor's plugin is its gate, asking ``spanvisor
hook kilo`` (it tells Kilo by ``KILO_PID``), and under ``spanvisor run`` the
launcher reads its ``run --format json`` as OpenCode's.

* Alone, with the plugin set up as the docs say (``KILO_CONFIG_CONTENT``):
  a policy's denial the agent obeys, a person's approval from the terminal
  and another by alice's signed Slack click, each letting the very command
  run, an error of the hook (its policy turned to junk) blocking the call;
  with no spanvisor to run, the plugin blocks the call.
* Alone, the session's task is named by its first prompt and ends as Kilo
  reported its last turn (the plugin's ``SessionEnd`` at shutdown).
* Under the launcher: one task named from its prompt, its model calls and
  tokens, priced, its shell call a step, complete.

* ``spanvisor gate install --cli kilo``: a locked copy of the plugin in its
  managed config folder runs after the repository's plugins, whatever the
  agent's ``SPANVISOR_BIN`` says.

A Cancel that stops it, under the launcher and alone: test_stop_more.py.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import endhooks as eh
from tests.codingagents import kilo_cli as kc
from tests.codingagents import opencode_cli as oc
from tests.codingagents import test_gate_install as gi
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import GateSession, drive_twice, ruling, steps
from tests.codingagents.script import Script, Usage, text, tool
from tests.codingagents.served import Matrix
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


def test_the_gate_denies_by_policy_asks_people_in_the_terminal_and_slack_and_blocks_when_the_hook_fails(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    gate = GateSession(uuid.uuid4().hex[:12], tmp_path / "work", tmp_path / "policy.toml")
    gate.prepare(kc.SHELL)
    clicked = f"echo clicked-{gate.run_id}"
    commands = ["rm -rf build", gate.approved, clicked, "touch ran.txt"]
    api.script(gate.run_id, Script([*(tool(kc.SHELL, command=c, description="tidy") for c in commands), text("Done.")]))
    env = kc.with_plugin(kc.env(tmp_path / "home", api, gate.run_id))
    env.update(SPANVISOR_HOOK_POLICY=str(gate.policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint)
    running = kc.kilo_started(cli_bin, gate.work, env, f"tidy up ({gate.run_id})")
    ran, asked = drive_twice(matrix, gate, running, clicked)
    assert [r["question"] for r in asked] == [f"Allow bash: {c}?" for c in commands[1:3]]
    session = kc.task_of(ran)
    assert session.startswith("kilo:") and [r["task_id"] for r in asked] == [session, session]
    denied, approved, by_click, failed = tool_results(turns(api, gate.run_id)[-1])
    assert f"clicked-{gate.run_id}" in by_click and "spanvisor" not in by_click, by_click
    gate.check(matrix, ran, [denied, approved, failed], session, None, clicked=True)
    assert [p["state"]["status"] for p in kc.tools(ran)] == ["error", "completed", "completed", "error"]
    assert ruling(matrix, session) == "bash: rm -rf build: denied by policy:no-deleting"
    # Alone, the plugin named the task by the first prompt and ended it as Kilo reported.
    ended = eh.ended(matrix, session)
    assert (ended["status"], ended["task_name"]) == ("complete", f"tidy up ({gate.run_id})"), ended


def test_with_no_spanvisor_to_run_the_plugin_blocks_the_call(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex[:12]
    api.script(run_id, Script([tool(kc.SHELL, command="touch ran.txt", description="touch"), text("Done.")]))
    env = kc.with_plugin(kc.env(tmp_path / "home", api, run_id))
    env["SPANVISOR_BIN"] = str(tmp_path / "no-such-spanvisor")
    work = tmp_path / "work"
    ran = kc.kilo(cli_bin, work, env, f"touch it ({run_id})")
    assert ran.code == 0, ran.said()
    assert not (work / "ran.txt").exists(), "the call ran without the gate"
    [blocked] = tool_results(turns(api, run_id)[-1])
    assert "spanvisor hook could not be run" in blocked and "denied" in blocked, blocked


def test_under_the_launcher_a_session_is_one_named_task_with_its_calls_priced_and_its_step_then_complete(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    script = Script(
        [
            tool(kc.SHELL, Usage(5_500, 40, 1_500), command="echo hello-kilo", description="say hello"),
            text("It printed hello.", Usage(7_000, 20, 2_000)),
        ]
    )
    run_id = api.script(uuid.uuid4().hex[:12], script)
    task_id = f"kilo-launched:{run_id}"
    env = kc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    # As a user starts it: no --format (the launcher asks for json and prints the text).
    ran = kc.kilo(cli_bin, tmp_path / "work", env, f"say hello with the shell ({run_id})", launcher, fmt=None)
    assert ran.code == 0 and ran.stdout.strip() == "It printed hello.", ran.said()
    assert "hello-kilo" in json.dumps(tool_results(turns(api, run_id)[-1])), "the shell call ran"

    def done() -> dict[str, object] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["ended_at"] is not None and r["output_tokens"] >= 60 else None

    row = wait_until(done, WAIT_S, f"task {task_id}")
    assert (row["status"], row["agent_id"], row["task_name"]) == (
        "complete",
        "kilo",
        f"say hello with the shell ({run_id})",
    )
    assert (row["input_tokens"], row["output_tokens"], row["model"]) == (16_000, 60, kc.MODEL)
    assert row["cost_usd"] > 0 and row["unpriced_calls"] == 0
    assert steps(matrix, task_id) == ["bash(echo hello-kilo)"]


def test_its_managed_plugin_runs_last_and_locked_against_the_repositorys_plugins(
    cli_bin: Path, api: FakeModelAPI, tmp_path: Path
) -> None:
    """``spanvisor gate install --cli kilo`` writes a locked copy of the plugin
    into Kilo's managed config folder (``KILO_TEST_MANAGED_CONFIG_DIR``
    stands for ``/etc/kilo``): a repository's plugin (``.kilo/plugins``)
    that turns an allowed call into a forbidden one runs first, so the gate
    decides the call that would run, and a ``SPANVISOR_BIN`` of the agent's
    that allows everything is not run."""
    policy = tmp_path / "policy.toml"
    policy.write_text(gi.POLICY.replace('tool = ["run_shell_command"]', 'tool = ["bash"]'))
    managed = tmp_path / "managed"
    done = gi._gate_install(
        "--cli", "kilo", "--policy", str(policy), env={**os.environ, "KILO_TEST_MANAGED_CONFIG_DIR": str(managed)}
    )
    assert done.returncode == 0 and (managed / "kilo.json").exists(), done.stdout + done.stderr
    assert '"kilo" // locked by spanvisor gate install' in (managed / "spanvisor-gate.js").read_text()

    run_id = api.script(
        uuid.uuid4().hex[:12], Script([tool(kc.SHELL, command="echo hello", description="hi"), text("ok")])
    )
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "keep.txt").write_text("still here")
    (work / ".kilo" / "plugins").mkdir(parents=True)
    (work / ".kilo" / "plugins" / "rewrite.js").write_text(gi.REWRITE)
    oc.plugin_types_present(work / ".kilo", "@kilocode/plugin", kc.version())  # no npm install to wait for
    allow_all = tmp_path / "allow-all"
    allow_all.write_text('#!/bin/sh\necho \'{"decision": "allow", "reason": "agent"}\'\n')
    allow_all.chmod(0o755)
    env = kc.env(tmp_path / "home", api, run_id)
    env.update(KILO_TEST_MANAGED_CONFIG_DIR=str(managed), SPANVISOR_BIN=str(allow_all), SPANVISOR_HOOK_DELIVERY="off")
    ran = kc.kilo(cli_bin, work, env, f"say hello ({run_id})")
    assert ran.code == 0, ran.said()
    assert (work / "build" / "keep.txt").read_text() == "still here", "the rewritten call ran"
    [blocked] = tool_results(turns(api, run_id)[-1])
    assert "deleting is not allowed here" in blocked, blocked
