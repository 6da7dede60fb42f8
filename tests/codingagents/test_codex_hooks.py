"""Codex CLI's PreToolUse hook (``[[hooks.PreToolUse]]`` in config.toml,
run only with ``--dangerously-bypass-hook-trust``) running ``spanvisor hook
codex`` against the matrix's serve: a policy's denial the agent obeys, and
a person's approval from the terminal (``spanvisor approve``) and from a
signed Slack click, each letting the very command run.

Codex asks its hook about its shell tool (``exec_command``) as ``Bash`` with
``{"command": …}``, and runs it in a workspace-write sandbox here, so a
command let through could change the working folder."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.clis.codex import trust as run_codex
from tests.codingagents import codex_cli as cx
from tests.codingagents.agents import run
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.fake_openai import fake_openai, function_outputs
from tests.codingagents.script import Script, text, tool
from tests.codingagents.served import APPROVER, Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

WAIT_S = 120.0
# Not "rm -rf": Codex refuses -f style removals itself, before any hook.
POLICY = """
default = "ask"
timeout = 150
on_timeout = "deny"

[[rule]]
name = "no-deleting"
tool = ["Bash"]
command = ["rm -r *"]
decision = "deny"
reason = "deleting is not allowed here"
"""


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_openai()
    try:
        yield fake
    finally:
        fake.close()


def _hooked(tmp_path: Path, matrix: Matrix, api: FakeModelAPI, run_id: str, telemetry: bool) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    # Codex passes its own environment to a hook: SPANVISOR_OTLP_ENDPOINT
    # tells the hook where serve is (its [otel] settings are no variables).
    return cx.env(
        tmp_path / "home",
        api,
        run_id,
        matrix if telemetry else None,
        hook=True,
        SPANVISOR_HOOK_POLICY=str(policy),
        SPANVISOR_OTLP_ENDPOINT=matrix.endpoint,
    )


def _last_outputs(api: FakeModelAPI, run_id: str) -> list[str]:
    asked = [s.body for s in api.requests(run_id) if s.path == "/v1/responses"]
    return function_outputs(asked[-1])


def test_a_denial_by_policy_is_obeyed_and_the_model_is_told_why(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(
        uuid.uuid4().hex[:12], Script([tool("exec_command", cmd="rm -r build"), text("I left build alone.")])
    )
    env = _hooked(tmp_path, matrix, api, run_id, telemetry=True)
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "keep.txt").write_text("still here")
    ran = cx.codex(cli_bin, work, env, f"clean the build folder ({run_id})", hook=True)
    assert ran.code == 0 and cx.said(ran) == ["I left build alone."], ran.said()
    session = cx.task_of(ran)
    assert (work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
    [denied] = _last_outputs(api, run_id)
    assert "blocked by PreToolUse hook" in denied and "deleting is not allowed here" in denied

    def said() -> list[dict[str, Any]] | None:
        events = [c for c in matrix.timeline(session) if c["source"] == "event"]
        return events or None

    # The hook's ruling, once: Codex itself records nothing of a call its hook denied.
    events = wait_until(said, WAIT_S, "the denial on the task")
    assert [c["message"] for c in events] == ["Bash: rm -r build: denied by policy:no-deleting"]
    assert json.loads(events[0]["attributes"])["agent.approval.decided_by"] == "policy:no-deleting"
    assert matrix.interventions(session) == [], "a policy decides: no person"
    assert [c for c in matrix.timeline(session) if c["source"] == "tool_call"] == [], "no step ran"
    assert api.unexpected == []


@pytest.mark.parametrize("how", ["cli", "slack"])
def test_a_persons_approval_lets_the_command_run(
    how: str, cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(
        uuid.uuid4().hex[:12], Script([tool("exec_command", cmd=f"echo approved-{how}"), text("Done.")])
    )
    task_id = f"codex-approve-{how}-{run_id}"
    # Telemetry from the launcher, not from config.toml.
    env = _hooked(tmp_path, matrix, api, run_id, telemetry=False)
    running = cx.codex_started(
        cli_bin,
        tmp_path / "work",
        env,
        f"say hello once approved ({run_id})",
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
    assert ran.code == 0 and cx.said(ran) == ["Done."], ran.said()
    [output] = _last_outputs(api, run_id)
    assert f"approved-{how}" in output, "the command ran"
    rows = wait_until(lambda: matrix.interventions(task_id), WAIT_S, "the human_interventions row")
    [row] = rows
    assert (row["action"], row["outcome"], row["source"]) == ("approve", "applied", how)
    assert row["actor"] == (APPROVER if how == "slack" else "bob")
    ended = wait_until(lambda: (r := matrix.task(task_id)) and r["ended_at"] and r, WAIT_S, "the task's end")
    assert ended["status"] == "complete"

    def steps() -> list[str] | None:
        found = [json.loads(c["attributes"])["tool"] for c in matrix.timeline(task_id) if c["source"] == "tool_call"]
        return found or None

    assert wait_until(steps, WAIT_S, "the step") == [f"exec_command(echo approved-{how})"]


def test_under_the_launcher_the_gate_runs_without_the_trust_flag(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """``spanvisor run -- codex exec …`` as the docs show it: no trust flag
    given, yet the gate stands in front of the call (the launcher vets that
    every hook is spanvisor's and passes Codex's flag itself)."""
    run_id = api.script(
        uuid.uuid4().hex[:12], Script([tool("exec_command", cmd="rm -r build"), text("I left build alone.")])
    )
    env = _hooked(tmp_path, matrix, api, run_id, telemetry=False)
    work = tmp_path / "work"
    (work / "build").mkdir(parents=True)
    (work / "build" / "keep.txt").write_text("still here")
    argv = [a for a in cx.argv(cli_bin, f"clean the build folder ({run_id})", hook=True) if a != run_codex.FLAG]
    ran = run(argv, env, work, {"endpoint": matrix.endpoint, "task-id": f"codex-trust-{run_id}"})
    assert (work / "build" / "keep.txt").read_text() == "still here", "the gate ran and denied the command"
    assert f"running them with {run_codex.FLAG}" in ran.stderr, ran.said()


def test_a_long_commands_dangerous_tail_is_shown_where_a_person_approves(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    """A command of 4,000 characters of padding then the part that matters,
    under the launcher: the Slack message a person approves from,
    `spanvisor approvals` and the control API show its end, and the
    approval lets exactly it run."""
    command = "echo " + "x" * 4_000 + " && echo the-dangerous-tail"
    run_id = api.script(uuid.uuid4().hex[:12], Script([tool("exec_command", cmd=command), text("Done.")]))
    task_id = f"codex-tail-{run_id}"
    env = _hooked(tmp_path, matrix, api, run_id, telemetry=False)
    running = cx.codex_started(
        cli_bin, tmp_path / "work", env, f"run it ({run_id})", {"endpoint": matrix.endpoint, "task-id": task_id}
    )
    try:

        def asked() -> list[dict[str, Any]]:
            if running.proc.poll() is not None:
                raise AssertionError(f"the CLI ended before asking:\n{running.wait().said()}")
            return matrix.pending(task_id)

        [req] = wait_until(asked, WAIT_S, "the hook's approval request", every=0.2)
        assert "the-dangerous-tail" in req["question"] and "characters" in req["question"]
        assert "the-dangerous-tail" in matrix.spanvisor("approvals", "--url", matrix.endpoint)
        parent, button = wait_until(lambda: matrix.approve_button(task_id), WAIT_S, "the Approve button in Slack")
        assert "the-dangerous-tail" in json.dumps([parent.text, parent.blocks, parent.attachments])
        assert matrix.click(parent, button) == 200
        ran = running.wait()
    finally:
        running.stop()
    assert ran.code == 0 and cx.said(ran) == ["Done."], ran.said()
    [output] = _last_outputs(api, run_id)
    assert "the-dangerous-tail" in output, "the approved command ran, whole"
