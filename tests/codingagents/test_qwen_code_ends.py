"""Qwen Code 0.24.4 without the launcher, its turn and session-end hooks set
as docs/reference/coding-agents-hooks.md shows them (``UserPromptSubmit``,
``Stop``, ``StopFailure``, ``SessionEnd`` running ``spanvisor hook qwen``).

In a ``-p`` run Qwen Code fires ``Stop`` when its turn finished and never
``SessionEnd``; on an API error, on SIGTERM and on SIGINT (Ctrl-C) it
fires no end hook at all (measured with a probe hook on every end event).
So:

* success: its ``Stop``, in a CLI started with ``-p``, ends the task
  ``complete`` once the CLI exited;
* a call the gate denied by policy (its ``PreToolUse`` hook too): the
  model is told, the session goes on and its ``Stop`` ends it ``complete``;
* an API error, SIGTERM and SIGINT: no hook runs, the task ends by
  liveness (``lost``), as before (strict xfail below, with the reason: no
  end within seconds of the exit, as a hook would have ended it).
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.codingagents import endhooks as eh
from tests.codingagents import qwen_code as qc
from tests.codingagents.agents import start
from tests.codingagents.fake_chat import fake_chat
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.hooked import ruling
from tests.codingagents.script import Script, error, held, text, tool
from tests.codingagents.served import Matrix

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]

DENY_RM = 'default = "allow"\n[[rule]]\nname = "no-deleting"\ncommand = ["rm *"]\ndecision = "deny"\n'


@pytest.fixture(scope="module")
def api() -> Iterator[FakeModelAPI]:
    fake = fake_chat()
    try:
        yield fake
    finally:
        fake.close()


def _env(home: Path, matrix: Matrix, api: FakeModelAPI, run_id: str) -> dict[str, str]:
    env = qc.env(home, matrix, api, run_id)
    eh.add_qwen_hooks(home)
    return {**env, "SPANVISOR_OTLP_ENDPOINT": matrix.endpoint}


def test_a_session_alone_ends_complete_by_its_stop_hook_and_so_does_one_the_gate_denied(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    scripts = {
        "ok": Script([tool(qc.SHELL, command="echo ends-ok"), text("Done.")]),
        "denied": Script([tool(qc.SHELL, command="rm build.txt"), text("Left it.")]),
    }
    ids = {row: api.script(uuid.uuid4().hex[:12], s) for row, s in scripts.items()}
    running = {}
    try:
        for row, run_id in ids.items():
            (tmp_path / row).mkdir()
            home = tmp_path / row / "home"
            if row == "denied":
                env = qc.env(home, matrix, api, run_id)
                qc.add_hook(home)  # the gate's PreToolUse first: it sets the hooks, the ends join them
                eh.add_qwen_hooks(home)
                (tmp_path / row / "policy.toml").write_text(DENY_RM)
                (tmp_path / row / "build.txt").write_text("keep")
                env.update(
                    SPANVISOR_OTLP_ENDPOINT=matrix.endpoint, SPANVISOR_HOOK_POLICY=str(tmp_path / row / "policy.toml")
                )
            else:
                env = _env(home, matrix, api, run_id)
            running[row] = start(qc.argv(cli_bin, f"end {row} ({run_id})"), env, tmp_path / row)
        ran = {row: r.wait() for row, r in running.items()}
    finally:
        for r in running.values():
            r.stop()
    assert (ran["ok"].code, ran["denied"].code) == (0, 0), [r.said() for r in ran.values()]
    row = eh.ended(matrix, qc.task_of(ran["ok"]))
    assert (row["status"], row["message"], row["error_message"]) == ("complete", "Finished", None), row
    assert row["task_name"] == f"end ok ({ids['ok']})"
    denied = qc.task_of(ran["denied"])
    assert ruling(matrix, denied) == "run_shell_command: rm build.txt: denied by policy:no-deleting"
    assert (tmp_path / "denied" / "build.txt").exists()
    left = eh.ended(matrix, denied)
    assert (left["status"], left["message"], left["error_message"]) == ("complete", "Finished", None), left


@pytest.mark.xfail(
    strict=True,
    reason="Qwen Code 0.24.4 runs no hook on an API error, SIGTERM or SIGINT in a -p run (no Stop, no "
    "StopFailure, no SessionEnd): the session ends by liveness, lost",
)
# Slow by design: three real sessions, two held until signalled, then the hook-end wait of a strict xfail.
def test_an_api_error_sigterm_and_sigint_alone_end_error_and_cancelled(
    cli_bin: Path, matrix: Matrix, api: FakeModelAPI, tmp_path: Path
) -> None:
    # The failing call waits until serve has heard of the session (its records
    # leave every few seconds; failing sooner, it would leave none at all).
    failing = eh.Gated([tool(qc.SHELL, command="echo first"), error(400, "invalid_request_error", "scripted 7f")], 1)
    ids = {
        "fail": api.script(uuid.uuid4().hex[:12], failing),
        "term": api.script(uuid.uuid4().hex[:12], Script([held(text("too late"), 300)])),
        "int": api.script(uuid.uuid4().hex[:12], Script([held(text("too late"), 300)])),
    }
    running = {}
    try:
        for row, run_id in ids.items():
            (tmp_path / row).mkdir()
            env = _env(tmp_path / row / "home", matrix, api, run_id)
            running[row] = start(qc.argv(cli_bin, f"end {row} ({run_id})"), env, tmp_path / row)
        opened = {row: eh.task_named(matrix, "qwen-code", run_id)["task_id"] for row, run_id in ids.items()}
        failing.go()
        eh.signal_cli(running["term"], api, ids["term"], signal.SIGTERM)
        eh.signal_cli(running["int"], api, ids["int"], signal.SIGINT)
        for r in running.values():
            r.wait()
    finally:
        failing.go()
        for r in running.values():
            r.stop()
    ends = eh.ends_of(matrix, opened, eh.HOOK_END_S)
    assert ends == {"fail": "error", "term": "cancelled", "int": "cancelled"}, ends
