"""Factory Droid 0.225.2 (``@factory/cli``'s linux-x64 binary), the real
CLI, offline against the fake Chat Completions API (a custom model of the
user's settings: no login; air-gapped, ``FACTORY_AIRGAP_ENABLED``, so it
waits on none of Factory's services). Claude Code's hook contract: ``spanvisor hook
droid`` in its settings, and under ``spanvisor run`` the launcher reads
its ``exec -o stream-json``.

* Alone, with the hook in ``~/.factory/settings.json`` and a repository
  hook that allows every call (read first): a policy's denial the agent
  obeys (its exit status 2 wins over that allow), a person's approval from the terminal and another by
  alice's signed Slack click, each letting the very command run, an error
  of the hook (its policy turned to junk) blocking the call; its
  ``SessionStart`` names its task from its prompt, its ``SessionEnd`` ends it.
* A hook that cannot start lets Droid run the call, ``"onFailure":
  "block"`` or not: proven here, and why the gate's command must be an
  absolute path (``spanvisor check`` says so).
* Under the launcher: one task named from its prompt, the run's tokens
  (its ``completion`` names no call: one model call with the run's
  total), priced from the custom model's own model, its shell call a step,
  complete; an API error fails it with the API's message, and alone too
  (its ``SessionEnd`` reads the transcript's turn outcome).
* Alone, a Cancel clicked in Slack blocks its next tool call and ends the
  task ``cancelled`` (under the launcher: test_stop_more.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor_slack import actions as A
from tests.codingagents import droid_cli as dc
from tests.codingagents import endhooks as eh
from tests.codingagents import stopping as st
from tests.codingagents.fake_chat import fake_chat, tool_results, turns
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import GateSession, drive_twice, ruling, steps
from tests.codingagents.script import Script, Usage, error, text
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
    gate.prepare(dc.SHELL)
    clicked = f"echo clicked-{gate.run_id}"
    commands = ["rm -rf build", gate.approved, clicked, "touch ran.txt"]
    api.script(gate.run_id, Script([*(dc.shell(c) for c in commands), text("Done.")]))
    home = tmp_path / "home"
    env = dc.env(home, api, gate.run_id)
    dc.add_hooks(home)
    # The repository's own hook allows every call, and Droid reads it before
    # the user's: a deny holds by its exit status 2, which no allow overrides.
    allow = json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow"}})
    repo_hook = {"type": "command", "command": f"echo '{allow}'"}
    (gate.work / ".factory").mkdir()
    (gate.work / ".factory" / "settings.json").write_text(
        json.dumps({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [repo_hook]}]}})
    )
    env.update(SPANVISOR_HOOK_POLICY=str(gate.policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint)
    running = dc.droid_started(cli_bin, gate.work, env, f"tidy up ({gate.run_id})")
    ran, asked = drive_twice(matrix, gate, running, clicked)
    assert [r["question"] for r in asked] == [f"Allow {dc.SHELL}: {c}?" for c in commands[1:3]]
    session = dc.task_of(ran)
    assert session.startswith("droid:") and [r["task_id"] for r in asked] == [session, session]
    denied, approved, by_click, failed = tool_results(turns(api, gate.run_id)[-1])
    assert f"clicked-{gate.run_id}" in by_click and "spanvisor" not in by_click, by_click
    gate.check(matrix, ran, [denied, approved, failed], session, None, clicked=True)
    assert ruling(matrix, session) == f"{dc.SHELL}: rm -rf build: denied by policy:no-deleting"
    ended = eh.ended(matrix, session)
    assert ended["status"] == "complete", ended
    assert ended["task_name"] == f"tidy up ({gate.run_id})", ended  # its SessionStart's transcript title


def test_a_hook_that_cannot_start_lets_the_call_run_on_failure_block_or_not(
    cli_bin: Path, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex[:12]
    api.script(run_id, Script([dc.shell("touch ran.txt"), text("Done.")]))
    home = tmp_path / "home"
    env = dc.env(home, api, run_id)
    dc.add_hooks(home, command=str(tmp_path / "no-such-spanvisor") + " hook droid")
    path = home / ".factory" / "settings.json"
    settings = json.loads(path.read_text())
    settings["hooks"]["PreToolUse"][0]["hooks"][0]["onFailure"] = "block"
    path.write_text(json.dumps(settings))
    work = tmp_path / "work"
    ran = dc.droid(cli_bin, work, env, f"touch it ({run_id})")
    assert ran.code == 0, ran.said()
    assert (work / "ran.txt").exists(), (
        "Droid 0.225.2 blocked a call whose hook could not start: the docs say it runs it"
    )


def test_under_the_launcher_a_session_is_one_named_task_with_its_tokens_priced_and_its_step_then_complete(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    script = Script(
        [dc.shell("echo hello-droid", Usage(5_500, 40, 1_500)), text("It printed hello.", Usage(7_000, 20))]
    )
    run_id = api.script(uuid.uuid4().hex[:12], script)
    task_id = f"droid-launched:{run_id}"
    env = dc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    # As a user starts it: no -o (the launcher asks for stream-json and prints the answer).
    ran = dc.droid(cli_bin, tmp_path / "work", env, f"say hello with the shell ({run_id})", launcher, fmt=None)
    assert ran.code == 0 and ran.stdout.strip() == "It printed hello.", ran.said()
    assert "hello-droid" in json.dumps(tool_results(turns(api, run_id)[-1])), "the shell call ran"

    def done() -> dict[str, object] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["ended_at"] is not None and r["output_tokens"] >= 60 else None

    row = wait_until(done, WAIT_S, f"task {task_id}")
    assert (row["status"], row["agent_id"]) == ("complete", "droid"), row
    assert row["task_name"] == f"say hello with the shell ({run_id})"
    assert (row["output_tokens"], row["model"]) == (60, dc.MODEL), row
    assert row["input_tokens"] >= 12_500 and row["cost_usd"] > 0 and row["unpriced_calls"] == 0, row
    assert steps(matrix, task_id) == [f"{dc.SHELL}(echo hello-droid)"]


def test_an_api_error_fails_the_session_under_the_launcher_with_the_apis_error(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([error(401, "invalid_api_key", "scripted: bad key")]))
    task_id = f"droid-failed-{run_id}"
    env = dc.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = dc.droid(cli_bin, tmp_path / "work", env, f"fail at once ({run_id})", launcher)
    assert ran.code == 1, ran.said()

    def ended() -> dict[str, object] | None:
        r = matrix.task(task_id)
        return r if r is not None and r["ended_at"] is not None else None

    row = wait_until(ended, WAIT_S, f"task {task_id}")
    assert row["status"] == "error" and "scripted: bad key" in str(row["error_message"]), row

    # Alone: Droid runs Stop after the failed turn too; its SessionEnd reads
    # how the turn ended from the transcript (agent_turn_outcome), and the
    # error it showed its user.
    alone_id = api.script(uuid.uuid4().hex[:12], Script([error(401, "invalid_api_key", "scripted: bad key")]))
    home = tmp_path / "alone"
    env = dc.env(home, api, alone_id)
    dc.add_hooks(home)
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "allow"\n')
    env.update(SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, SPANVISOR_HOOK_POLICY=str(policy))
    alone = dc.droid(cli_bin, tmp_path / "work-alone", env, f"fail alone ({alone_id})")
    assert alone.code == 1, alone.said()
    row = eh.ended(matrix, dc.task_of(alone))
    assert (row["status"], row["task_name"]) == ("error", f"fail alone ({alone_id})"), row
    assert "401" in str(row["error_message"]), row


def test_alone_a_cancel_clicked_in_slack_blocks_its_next_tool_call(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """As test_stop_more.py's row for the others, one session at a time: its
    first call runs; its model's next answer (``touch two.txt``) waits until
    alice clicked Cancel in Slack; the gate blocks it, the model is told,
    and the task ends ``cancelled``."""
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "allow"\n')
    extra = {
        "SPANVISOR_OTLP_ENDPOINT": matrix.endpoint,
        "SPANVISOR_HOOK_POLICY": str(policy),
        "SPANVISOR_HOOK_CANCEL_WAIT": "5s",  # as test_stop_more.py's look at its longest
    }
    script = eh.Gated([dc.shell("echo one"), dc.shell("touch two.txt"), text("ok")], 1)
    run_id = api.script(uuid.uuid4().hex[:12], script)
    before = {r["task_id"] for r in matrix.tasks_of("droid")}
    running, work = st.alone("droid", tmp_path, cli_bin, matrix, api, run_id, extra)
    try:
        wait_until(script.reached.is_set, WAIT_S, "Droid to ask for its second turn (its first call ran)")
        task = st.new_task(matrix, "droid", before)
        found = matrix.shown_button(task, A.CANCEL, WAIT_S, "droid")
        assert matrix.click(*found) == 200
        wait_until(lambda: (matrix.control(task) or {}).get("cancel"), WAIT_S, "the cancel recorded")
        said = "next tool call will be blocked by spanvisor hook"
        wait_until(lambda: said in matrix.ever_shown(task), WAIT_S, "Slack to say its next tool call will be blocked")
        script.go()
        ran = running.wait()
    finally:
        script.go()
        running.stop()
    assert not (work / "two.txt").exists(), f"the call after the cancel ran\n{ran.said()}"
    told = json.dumps([s.body for s in api.requests(run_id) if s.method == "POST"])
    assert "cancelled by " in told, f"the model was told the session was cancelled\n{ran.said()}"
    row = eh.ended(matrix, task)
    assert row["status"] == "cancelled" and row["message"].startswith("Cancelled by"), row
