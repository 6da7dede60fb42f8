"""Claude Code's PreToolUse hook running ``spanvisor hook claude-code``
against the matrix's serve: a policy's denial the agent obeys, and a
person's approval from the terminal (``spanvisor approve``) and from a
signed Slack click, each letting the very command run."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import claude_code as cc
from tests.codingagents.fake_anthropic import result_text, tool_results
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import APPROVER, Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

WAIT_S = 120.0
POLICY = """
default = "ask"
timeout = 150
on_timeout = "deny"

[[rule]]
name = "no-deleting"
tool = ["Bash"]
command = ["rm -rf*"]
decision = "deny"
reason = "deleting is not allowed here"
"""


def _hooked(tmp_path: Path, matrix: Matrix, anthropic: FakeModelAPI, run_id: str) -> tuple[dict[str, str], Path]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    # SPANVISOR_OTLP_ENDPOINT: Claude Code passes no OTEL_* variable to a
    # hook, so OTEL_EXPORTER_OTLP_ENDPOINT cannot tell it where serve is.
    env = cc.env(
        tmp_path / "home",
        matrix,
        anthropic,
        run_id,
        SPANVISOR_HOOK_POLICY=str(policy),
        SPANVISOR_OTLP_ENDPOINT=matrix.endpoint,
    )
    return env, cc.hook_settings(tmp_path / "settings.json")


def _last_results(anthropic: FakeModelAPI, run_id: str) -> list[dict[str, Any]]:
    asked = [s for s in anthropic.requests(run_id) if s.path.startswith("/v1/messages")]
    return tool_results(asked[-1].body)


def test_a_denial_by_policy_is_obeyed_and_the_model_is_told_why(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(
        uuid.uuid4().hex[:12], Script([tool("Bash", command="rm -rf build"), text("I left build alone.")])
    )
    env, settings = _hooked(tmp_path, matrix, anthropic, run_id)
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "keep.txt").write_text("still here")
    ran = cc.claude(cli_bin, work, env, f"clean the build folder ({run_id})", settings=settings)
    assert ran.code == 0, ran.said()
    session = cc.task_of(ran)
    assert (work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
    [denied] = _last_results(anthropic, run_id)
    assert denied.get("is_error") is True and "deleting is not allowed here" in result_text(denied)

    def said() -> list[dict[str, Any]] | None:
        events = [c for c in matrix.timeline(session) if c["source"] == "event"]
        return events if len(events) >= 2 else None

    # The hook's ruling and Claude Code's own record of it, once each.
    events = wait_until(said, WAIT_S, "the denial on the task")
    assert [c["message"] for c in events] == [
        "Bash: rm -rf build: denied by policy:no-deleting",
        "⚠ Denied: Bash (by hook)",
    ]
    assert json.loads(events[0]["attributes"])["agent.approval.decided_by"] == "policy:no-deleting"
    assert matrix.interventions(session) == [], "a policy decides: no person"


@pytest.mark.parametrize("how", ["cli", "slack"])
def test_a_persons_approval_lets_the_command_run(
    how: str, cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = anthropic.script(
        uuid.uuid4().hex[:12], Script([tool("Bash", command=f"echo approved-{how}"), text("Done.")])
    )
    task_id = f"cc-approve-{how}-{run_id}"
    env, settings = _hooked(tmp_path, matrix, anthropic, run_id)
    running = cc.claude_started(
        cli_bin,
        tmp_path / "work",
        env,
        f"say hello once approved ({run_id})",
        settings,
        {"endpoint": matrix.endpoint, "task-id": task_id},
    )
    try:

        def asked() -> list[dict[str, Any]]:
            if running.proc.poll() is not None:
                raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
            return matrix.pending(task_id)

        [req] = wait_until(asked, WAIT_S, "the hook's approval request", every=0.2)
        assert req["question"] == f"Allow Bash: echo approved-{how}?"
        if how == "cli":
            matrix.spanvisor("approve", task_id, req["approval_id"], "--as", "bob", "--url", matrix.endpoint)
        else:
            parent, button = wait_until(lambda: matrix.approve_button(task_id), WAIT_S, "the Approve button in Slack")
            assert f"echo approved-{how}" in json.dumps([parent.text, parent.blocks, parent.attachments])
            assert matrix.click(parent, button) == 200
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0 and ran.stdout.strip() == "Done.", ran.said()
    assert [result_text(r) for r in _last_results(anthropic, run_id)] == [f"approved-{how}"], "the command ran"
    rows = wait_until(lambda: matrix.interventions(task_id), WAIT_S, "the human_interventions row")
    [row] = rows
    assert (row["action"], row["outcome"], row["source"]) == ("approve", "applied", how)
    assert row["actor"] == (APPROVER if how == "slack" else "bob")
    ended = wait_until(lambda: (r := matrix.task(task_id)) and r["ended_at"] and r, WAIT_S, "the task's end")
    assert ended["status"] == "complete"
    steps = [c for c in matrix.timeline(task_id) if c["source"] == "tool_call"]
    assert [json.loads(c["attributes"])["tool"] for c in steps] == [f"Bash(echo approved-{how})"]


def test_a_long_commands_dangerous_tail_is_shown_where_a_person_approves(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    """A command of 4,000 characters of padding then the part that matters:
    the Slack message a person approves from, `spanvisor approvals` and the
    control API show its end, and the approval lets exactly it run."""
    command = "echo " + "x" * 4_000 + " && echo the-dangerous-tail"
    run_id = anthropic.script(uuid.uuid4().hex[:12], Script([tool("Bash", command=command), text("Done.")]))
    task_id = f"cc-tail-{run_id}"
    env, settings = _hooked(tmp_path, matrix, anthropic, run_id)
    running = cc.claude_started(
        cli_bin,
        tmp_path / "work",
        env,
        f"run it ({run_id})",
        settings,
        {"endpoint": matrix.endpoint, "task-id": task_id},
    )
    try:

        def asked() -> list[dict[str, Any]]:
            if running.proc.poll() is not None:
                raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
            return matrix.pending(task_id)

        [req] = wait_until(asked, WAIT_S, "the hook's approval request", every=0.2)
        assert "the-dangerous-tail" in req["question"] and "characters" in req["question"]
        listed = matrix.spanvisor("approvals", "--url", matrix.endpoint)
        assert "the-dangerous-tail" in listed
        parent, button = wait_until(lambda: matrix.approve_button(task_id), WAIT_S, "the Approve button in Slack")
        assert "the-dangerous-tail" in json.dumps([parent.text, parent.blocks, parent.attachments])
        assert matrix.click(parent, button) == 200
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0, ran.said()
    [result] = _last_results(anthropic, run_id)
    assert result_text(result).endswith("the-dangerous-tail"), "the approved command ran, whole"


def test_under_the_launcher_a_bare_spanvisor_hook_is_its_small_client(
    cli_bin: Path, matrix: Matrix, anthropic: FakeModelAPI, tmp_path: Path
) -> None:
    """The settings name `spanvisor hook claude-code`, with no spanvisor on
    the PATH the CLI is given: under the launcher that is its small client,
    which asks the launcher (and would become the full hook without it)."""
    import os
    import sys

    run_id = anthropic.script(
        uuid.uuid4().hex[:12], Script([tool("Bash", command="rm -rf build"), text("I left build alone.")])
    )
    env, _ = _hooked(tmp_path, matrix, anthropic, run_id)
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    settings = tmp_path / "bare.json"
    entry = {"type": "command", "command": "spanvisor hook claude-code", "timeout": 200, "onFailure": "block"}
    settings.write_text(json.dumps({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}}))
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    ran = cc.claude(cli_bin, work, env, f"clean ({run_id})", settings=settings, launcher={"endpoint": matrix.endpoint})
    assert ran.code == 0, ran.said()
    [denied] = _last_results(anthropic, run_id)
    assert "deleting is not allowed here" in result_text(denied), denied
    assert (work / "build").exists()
