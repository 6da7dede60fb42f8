"""Cline 3.0.65, the real CLI (its platform binary), offline against the
fake Chat Completions API, under ``spanvisor run --gate`` with spanvisor's
``PreToolUse`` hook in ``~/.cline/hooks`` (Cline 3.0.65 never runs one
given with ``--hooks-dir``: every call ran), in one session: a
policy's denial (the shell call's commands replaced by one that fails
saying why: nothing of them runs, the agent goes on), a person's approval
from the terminal letting the very command run, and an error of the hook
(its policy turned to junk while the person decided) blocking the call.
The launcher's task ends complete.

Cline exports no telemetry a user can point anywhere: the launcher reads
``--json``. It runs a call whose hook exits non-zero: every answer of the
hook is exit status 0."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import cline_cli as cl
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import WAIT_S, GateSession
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


def test_under_the_launcher_the_gate_denies_asks_a_person_and_blocks_when_the_hook_fails(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    gate = GateSession(uuid.uuid4().hex[:12], tmp_path / "work", tmp_path / "policy.toml")
    gate.prepare(cl.SHELL)
    touched = "touch ran.txt"
    api.script(
        gate.run_id,
        Script(
            [
                tool(cl.SHELL, commands=["rm -rf build"]),
                tool(cl.SHELL, commands=[f"{gate.approved} > approved.txt"]),
                tool(cl.SHELL, commands=[touched]),
                text("Done."),
            ]
        ),
    )
    env = cl.env(tmp_path / "home", api, gate.run_id)
    env.update(
        SPANVISOR_HOOK_POLICY=str(gate.policy), SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, SPANVISOR_HEARTBEAT="1s"
    )
    task_id = f"cline-gated-{gate.run_id}"
    cl.add_hook(tmp_path / "home")  # where Cline runs it from (--gate checks it is there)
    env["SPANVISOR_BIN"] = cl.SPANVISOR_BIN
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id, "gate": ""}
    running = cl.cline_started(cli_bin, gate.work, env, f"tidy up the folder ({gate.run_id})", launcher)
    ran, req = gate.drive(matrix, running)
    assert ran.code == 0, ran.said()
    assert req["task_id"] == task_id
    assert req["question"] == f"Allow {cl.SHELL}: {gate.approved} > approved.txt?"
    assert (gate.work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
    assert (gate.work / "approved.txt").read_text().strip() == f"approved-{gate.run_id}", "the approved one ran"
    assert not (gate.work / "ran.txt").exists(), "a call ran past a hook that failed"
    sent = json.dumps([s.body for s in api.requests(gate.run_id)])
    assert "deleting is not allowed here" in sent, "the model was told why"
    [row] = wait_until(lambda: matrix.interventions(task_id), WAIT_S, "the human_interventions row")
    assert (row["action"], row["outcome"], row["source"], row["actor"]) == ("approve", "applied", "cli", "bob")
    done = wait_until(lambda: (r := matrix.task(task_id)) and r["ended_at"] and r, WAIT_S, "the task's end")
    assert (done["status"], done["agent_id"]) == ("complete", "cline"), done
