"""Cline 3.0.65, the real CLI (its platform binary), offline against the
fake Chat Completions API, under ``spanvisor run --gate`` with spanvisor's
``PreToolUse`` hook in ``~/.cline/hooks`` (Cline 3.0.65 never runs one
given with ``--hooks-dir``: every call ran), in one session: a policy's
denial (the shell call's commands replaced by one that fails saying why:
nothing of them runs, the agent goes on), a person's approval from the
terminal and another by alice's signed Slack click, each letting the very
command run, and an error of the hook (its policy turned to junk while the
person decided) blocking the call. The launcher's task ends complete.

Cline exports no telemetry a user can point anywhere: the launcher reads
``--json``. The same session proves what it reads: each model call once,
its tokens equal to Cline's own ``run_result`` (cached input inside the
input), priced once from the tokens (Cline prints a cost of 0 for a model
it has no price for), each shell call a step with its commands, and the
context's growth warned at 70 % and 85 %. A second, short session ends
failed with the API's error on a 401. It runs a call whose hook exits
non-zero: every answer of the hook is exit status 0."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codingagents import cline_cli as cl
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import WAIT_S, GateSession, drive_twice, steps
from tests.codingagents.script import Script, Usage, error, text, tool
from tests.codingagents.served import APPROVER, Matrix
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

# The context grows past 70 % of gpt-4.1's window here (10,000) at once, past 85 % at the end.
USAGES = [Usage(5_500, 40, 1_500), Usage(5_600, 40, 1_500), Usage(5_700, 40, 1_500), Usage(5_800, 40, 1_500)]
LAST = Usage(7_000, 20, 2_000)


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def _attrs(row: dict[str, Any]) -> dict[str, Any]:
    a = row["attributes"]
    return dict(json.loads(a) if isinstance(a, str) else a)


def test_under_the_launcher_one_session_is_gated_approved_twice_and_read_calls_tokens_steps_warnings(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    gate = GateSession(uuid.uuid4().hex[:12], tmp_path / "work", tmp_path / "policy.toml")
    gate.prepare(cl.SHELL)
    clicked = f"echo clicked-{gate.run_id}"
    touched = "touch ran.txt"
    commands = ["rm -rf build", f"{gate.approved} > approved.txt", f"{clicked} > clicked.txt", touched]
    api.script(
        gate.run_id,
        Script(
            [*(tool(cl.SHELL, u, commands=[c]) for c, u in zip(commands, USAGES, strict=True)), text("Done.", LAST)]
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
    ran, asked = drive_twice(matrix, gate, running, clicked)
    assert ran.code == 0, ran.said()
    assert [r["task_id"] for r in asked] == [task_id, task_id]
    assert [r["question"] for r in asked] == [f"Allow {cl.SHELL}: {c}?" for c in commands[1:3]]
    assert (gate.work / "build" / "keep.txt").read_text() == "still here", "the denied command did not run"
    assert (gate.work / "approved.txt").read_text().strip() == f"approved-{gate.run_id}", "the approved one ran"
    assert (gate.work / "clicked.txt").read_text().strip() == f"clicked-{gate.run_id}", "the clicked one ran"
    assert not (gate.work / "ran.txt").exists(), "a call ran past a hook that failed"
    sent = json.dumps([s.body for s in api.requests(gate.run_id)])
    assert "deleting is not allowed here" in sent, "the model was told why"
    rows = wait_until(lambda: (r := matrix.interventions(task_id)) and len(r) == 2 and r, WAIT_S, "two approvals")
    got = sorted((r["action"], r["outcome"], r["source"], r["actor"]) for r in rows)
    assert got == [("approve", "applied", "cli", "bob"), ("approve", "applied", "slack", APPROVER)]
    done = wait_until(lambda: (r := matrix.task(task_id)) and r["ended_at"] and r, WAIT_S, "the task's end")
    assert (done["status"], done["agent_id"], done["model"]) == ("complete", "cline", cl.MODEL), done

    # What the launcher read of --json: each call once, Cline's own counts, priced once.
    own = cl.result_of(ran)["aggregateUsage"]
    every = [*USAGES, LAST]
    # Cline counts cached input inside inputTokens (as its own pricing reads it).
    assert (own["inputTokens"], own["cacheReadTokens"], own["outputTokens"]) == (
        sum(u.input_tokens + u.cache_read for u in every),
        sum(u.cache_read for u in every),
        sum(u.output_tokens for u in every),
    ), own
    assert (done["input_tokens"], done["output_tokens"]) == (own["inputTokens"], own["outputTokens"])
    calls = [_attrs(c) for c in matrix.timeline(task_id) if c["source"] == "model_call"]
    assert [(c["input_tokens"], c["output_tokens"]) for c in calls] == [
        (u.input_tokens + u.cache_read, u.output_tokens) for u in every
    ]
    assert {c["cost_source"] for c in calls} == {"genai-prices"} and done["unpriced_calls"] == 0
    assert done["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls)) and done["cost_usd"] > 0
    ran_steps = steps(matrix, task_id)
    assert len(ran_steps) == 4, ran_steps
    assert ran_steps[1:3] == [f"{cl.SHELL}({c})" for c in commands[1:3]], ran_steps
    warned = [(c["level"], c["threshold"]) for c in matrix.timeline(task_id) if c["kind"] == "context_warning"]
    assert warned == [("warning", 0.7), ("critical", 0.85)]


def test_an_api_error_fails_the_session_under_the_launcher_with_the_apis_error(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    run_id = api.script(uuid.uuid4().hex[:12], Script([error(401, "invalid_api_key", "scripted: bad key")]))
    task_id = f"cline-failed-{run_id}"
    env = cl.env(tmp_path / "home", api, run_id)
    env["SPANVISOR_HEARTBEAT"] = "1s"  # the launcher keeps its task live (liveness is seconds here)
    launcher = {"endpoint": matrix.endpoint, "task-id": task_id}
    # As a user starts it: no --json (the launcher asks for it and prints the error).
    ran = cl.cline(cli_bin, tmp_path / "work", env, f"fail at once ({run_id})", launcher, json_lines=False)
    assert ran.code == 1 and "Error: scripted: bad key" in ran.stderr, ran.said()
    done = wait_until(lambda: (r := matrix.task(task_id)) and r["ended_at"] and r, WAIT_S, "the task's end")
    assert done["status"] == "error" and "scripted: bad key" in done["error_message"], done
    warned = [c["message"] or "" for c in matrix.timeline(task_id) if c["source"] == "event"]
    assert "⚠ API error (auth): scripted: bad key" in warned, warned
