"""Gemini CLI's ``BeforeTool`` hook running ``spanvisor hook gemini``
against the matrix's serve: a policy's denial the agent obeys, and a
person's approval from the terminal (``spanvisor approve``) and from a
signed Slack click, each letting the very command run; nobody deciding
before Gemini CLI's hook timeout (past which it would run the call) is the
policy's denial.

Gemini CLI 0.61.0 hands its hooks its whole environment unless its
environment redaction is on, which it always is under GitHub Actions
(``GITHUB_SHA`` set): then only its own short list of variables reaches a
hook, and the settings' ``security.environmentVariableRedaction.allowed``
must name spanvisor's."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.hook import task as ct
from tests.codingagents import gemini_cli as gc
from tests.codingagents.fake_gemini import fake_gemini, function_responses
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import APPROVER, Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

WAIT_S = 120.0
SHELL = "run_shell_command"
POLICY = """
default = "ask"
timeout = 150
on_timeout = "deny"

[[rule]]
name = "no-deleting"
tool = ["run_shell_command"]
command = ["rm -rf*"]
decision = "deny"
reason = "deleting is not allowed here"
"""
# What the hook reads, named for Gemini CLI's redaction under GitHub Actions.
SPANVISOR_VARS = ("SPANVISOR_HOOK_POLICY", ct.ENV_ENDPOINT, ct.ENV_TASK_ID, ct.ENV_TASK_OWNER)


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_gemini()
    try:
        yield fake
    finally:
        fake.close()


def _hooked(
    tmp_path: Path,
    matrix: Matrix,
    api: FakeModelAPI,
    run_id: str,
    ci: str = "",
    telemetry: bool = True,
    hook_timeout_s: int = 200,
) -> dict[str, str]:
    """``ci``: as under GitHub Actions, with spanvisor's variables ``listed``
    in the settings or ``bare``."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    home = tmp_path / "home"
    env = gc.env(home, matrix, api, run_id, telemetry=telemetry)
    gc.add_hook(home, hook_timeout_s, passed=SPANVISOR_VARS if ci == "listed" else ())
    # SPANVISOR_HEARTBEAT: the launcher's, within the matrix's short lost-after
    # (a loaded machine starts Gemini CLI slowly).
    env.update(SPANVISOR_HOOK_POLICY=str(policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, SPANVISOR_HEARTBEAT="1s")
    if ci:
        env.update(GITHUB_SHA="0" * 40, GITHUB_ACTIONS="true")
    return env


def _answers(api: FakeModelAPI, run_id: str) -> list[dict[str, Any]]:
    """What the CLI told the model of its tool calls, in its last request."""
    return function_responses(api.requests(run_id)[-1].body)


def _steps(matrix: Matrix, task_id: str) -> list[str]:
    return [json.loads(c["attributes"])["tool"] for c in matrix.timeline(task_id) if c["source"] == "tool_call"]


def _hook_and_cli(matrix: Matrix, task_id: str) -> list[dict[str, Any]] | None:
    """The hook's ruling and Gemini CLI's own record of the blocked call."""
    rows = matrix.timeline(task_id)
    ruling = next((c for c in rows if c["source"] == "event" and "denied by" in str(c.get("message"))), None)
    step = next((c for c in rows if c["source"] == "tool_call"), None)
    # In the order they happened: the hook rules before Gemini CLI records the blocked call.
    return sorted([ruling, step], key=rows.index) if ruling and step else None


def test_a_denial_by_policy_is_obeyed_and_the_model_is_told_why(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(
        uuid.uuid4().hex[:12], Script([tool(SHELL, command="rm -rf build"), text("I left build alone.")])
    )
    env = _hooked(tmp_path, matrix, api, run_id)
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "keep.txt").write_text("still here")
    ran = gc.gemini(cli_bin, work, env, f"clean the build folder ({run_id})")
    assert ran.code == 0, ran.said()
    session = gc.task_of(ran)
    assert (work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
    [denied] = _answers(api, run_id)
    assert denied["response"] == {"error": "Tool execution blocked: spanvisor: deleting is not allowed here"}

    # Gemini CLI records a call its hook blocked as a failed tool call.
    ruling, step = wait_until(lambda: _hook_and_cli(matrix, session), WAIT_S, "the denial on the task")
    assert (ruling["source"], step["source"]) == ("event", "tool_call")
    assert ruling["message"] == "run_shell_command: rm -rf build: denied by policy:no-deleting"
    assert json.loads(ruling["attributes"])["agent.approval.decided_by"] == "policy:no-deleting"
    assert json.loads(step["attributes"])["error"] == "Tool execution blocked: spanvisor: deleting is not allowed here"
    assert matrix.interventions(session) == [], "a policy decides: no person"
    # The hook opened the session's task before Gemini CLI's records named it: one task.
    row = matrix.task(session)
    assert row is not None and row["task_name"] == f"clean the build folder ({run_id})"


@pytest.mark.parametrize("listed", [True, False])
def test_under_github_actions_only_the_variables_the_settings_name_reach_the_hook(
    listed: bool, cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(
        uuid.uuid4().hex[:12], Script([tool(SHELL, command="rm -rf build"), text("I left build alone.")])
    )
    task_id = f"gem-ci-{run_id}"
    env = _hooked(tmp_path, matrix, api, run_id, ci="listed" if listed else "bare", telemetry=False)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    ran = gc.gemini(cli_bin, tmp_path / "work", env, f"clean up in CI ({run_id})", launcher)
    assert ran.code == 0, ran.said()
    [denied] = _answers(api, run_id)
    if not listed:
        # No policy, no task, no endpoint reached the hook: it fails closed.
        assert "denied until a person can be asked" in denied["response"]["error"], denied
        return
    # The policy's own reason: the hook read the policy file the environment names.
    assert denied["response"] == {"error": "Tool execution blocked: spanvisor: deleting is not allowed here"}
    ruling, _ = wait_until(lambda: _hook_and_cli(matrix, task_id), WAIT_S, "the denial on the launcher's task")
    assert ruling["message"] == "run_shell_command: rm -rf build: denied by policy:no-deleting"
    ended = wait_until(lambda: (r := matrix.task(task_id)) and r["ended_at"] and r, WAIT_S, "the task's end")
    assert ended["status"] == "complete"


def _pending_with(matrix: Matrix, marker: str) -> list[dict[str, Any]]:
    """Open approval requests whose question names ``marker`` (whatever their task)."""
    with urllib.request.urlopen(f"{matrix.endpoint}/v1/control/approvals", timeout=20) as resp:
        doc = json.loads(resp.read())
    return [r for r in doc.get("approvals", []) if marker in str(r.get("question"))]


@pytest.mark.parametrize("how", ["cli", "slack"])
def test_a_persons_approval_lets_the_command_run(
    how: str, cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """From the terminal on a session alone (its task is Gemini CLI's session
    id), from Slack under the launcher (the launcher's task)."""
    run_id = uuid.uuid4().hex[:12]
    command = f"echo approved-{how}-{run_id}"
    api.script(run_id, Script([tool(SHELL, command=command), text("Done.")]))
    launched = how == "slack"
    env = _hooked(tmp_path, matrix, api, run_id, telemetry=not launched)
    launcher = {"endpoint": matrix.endpoint, "task-id": f"gem-approve-{run_id}"} if launched else None
    running = gc.gemini_started(cli_bin, tmp_path / "work", env, f"say hello once approved ({run_id})", launcher)
    try:

        def asked() -> list[dict[str, Any]]:
            if running.proc.poll() is not None:
                raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
            return _pending_with(matrix, run_id)

        [req] = wait_until(asked, WAIT_S, "the hook's approval request", every=0.2)
        assert req["question"] == f"Allow run_shell_command: {command}?"
        task_id = req["task_id"]
        if launched:
            assert task_id == f"gem-approve-{run_id}"
            parent, button = wait_until(lambda: matrix.approve_button(task_id), WAIT_S, "the Approve button in Slack")
            assert command in json.dumps([parent.text, parent.blocks, parent.attachments])
            assert matrix.click(parent, button) == 200
        else:
            matrix.spanvisor("approve", task_id, req["approval_id"], "--as", "bob", "--url", matrix.endpoint)
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0, ran.said()
    if not launched:
        assert task_id == gc.task_of(ran), "alone, the request is on Gemini CLI's session"
    [shell] = _answers(api, run_id)
    assert f"approved-{how}-{run_id}" in json.dumps(shell["response"]), "the command ran"
    assert "error" not in shell["response"]
    [row] = wait_until(lambda: matrix.interventions(task_id), WAIT_S, "the human_interventions row")
    assert (row["action"], row["outcome"], row["source"]) == ("approve", "applied", how)
    assert row["actor"] == (APPROVER if launched else "bob")
    steps = wait_until(lambda: _steps(matrix, task_id), WAIT_S, "the shell call on the task")
    assert steps == [f"run_shell_command({command})"]
    if launched:
        ended = wait_until(lambda: (r := matrix.task(task_id)) and r["ended_at"] and r, WAIT_S, "the task's end")
        assert ended["status"] == "complete"


# Slow by design: nobody decides, so the gate's deadline inside Gemini CLI's hook timeout runs out.
def test_nobody_deciding_before_gemini_clis_hook_timeout_is_a_denial_not_a_run(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """Gemini CLI runs the call when its hook times out; the hook, told the
    limit, answers the policy's on_timeout (deny) a few seconds before it."""
    run_id = uuid.uuid4().hex[:12]
    api.script(run_id, Script([tool(SHELL, command=f"echo unasked-{run_id}"), text("Nobody answered.")]))
    env = _hooked(tmp_path, matrix, api, run_id, hook_timeout_s=15)
    ran = gc.gemini(cli_bin, tmp_path / "work", env, f"say hello unasked ({run_id})")
    assert ran.code == 0, ran.said()
    [denied] = _answers(api, run_id)
    error = denied["response"].get("error", "")
    assert error.startswith("Tool execution blocked: spanvisor: no decision in "), denied
    assert error.endswith(" s; denied by policy:on_timeout"), denied
    assert f"unasked-{run_id}" not in json.dumps(denied["response"]), "the command did not run"


def test_a_long_commands_dangerous_tail_is_shown_where_a_person_approves(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """A command of 4,000 characters of padding then the part that matters,
    under the launcher: the Slack message a person approves from,
    `spanvisor approvals` and the control API show its end, and the
    approval lets exactly it run."""
    run_id = uuid.uuid4().hex[:12]
    command = f"echo {run_id} " + "x" * 4_000 + " && echo the-dangerous-tail"
    api.script(run_id, Script([tool(SHELL, command=command), text("Done.")]))
    env = _hooked(tmp_path, matrix, api, run_id, telemetry=False)
    task_id = f"gem-tail-{run_id}"
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    running = gc.gemini_started(cli_bin, tmp_path / "work", env, f"run it ({run_id})", launcher)
    try:

        def asked() -> list[dict[str, Any]]:
            if running.proc.poll() is not None:
                raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
            return _pending_with(matrix, run_id)

        [req] = wait_until(asked, WAIT_S, "the hook's approval request", every=0.2)
        assert "the-dangerous-tail" in req["question"] and "characters" in req["question"]
        assert "the-dangerous-tail" in matrix.spanvisor("approvals", "--url", matrix.endpoint)
        parent, button = wait_until(lambda: matrix.approve_button(task_id), WAIT_S, "the Approve button in Slack")
        assert "the-dangerous-tail" in json.dumps([parent.text, parent.blocks, parent.attachments])
        assert matrix.click(parent, button) == 200
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0, ran.said()
    [shell] = _answers(api, run_id)
    assert "the-dangerous-tail" in json.dumps(shell["response"]), "the approved command ran, whole"
    assert "error" not in shell["response"]
