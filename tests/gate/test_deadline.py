"""One deadline from the hook process's start through every path: a
launcher that accepts the hook's connection and never answers, a control
API that never answers and a policy file that never opens are each
answered before the CLI's hook timeout, and a launcher's silence never
opens a second request for a person (the hook that decides by itself has
no time left to ask anyone)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from spanvisor.gate import local
from spanvisor.launcher.gate import LocalGate
from tests.gate.blackhole import Blackhole
from tests.gate.test_attack import SPANVISOR, assert_block, decision, env_for

# The CLI's hook timeout these tests give the hook: every answer must come
# before it (Gemini CLI runs the call when its hook times out).
CLI_TIMEOUT_S = 4.0
ALLOW_LS = 'default = "ask"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *"]\ndecision = "allow"\n'


def timed_hook(
    tmp: Path, policy: Path, command: str, *args: str, extra: dict[str, str] | None = None
) -> tuple[float, int, str, str]:
    """The real hook under Gemini CLI's contract: seconds from spawn to exit, and what it said."""
    stdin = json.dumps({"session_id": "s1", "tool_name": "run_shell_command", "tool_input": {"command": command}})
    argv = [SPANVISOR, "hook", "gemini", "--policy", str(policy), "--cli-timeout", f"{CLI_TIMEOUT_S:g}", *args]
    t0 = time.monotonic()
    proc = subprocess.run(
        argv, input=stdin.encode(), capture_output=True, env={**env_for(tmp), **(extra or {})}, timeout=120, check=False
    )
    return time.monotonic() - t0, proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.parametrize(("command", "answer"), [("make deploy", "deny"), ("ls -la", "allow")])
def test_a_launcher_that_never_answers_is_outlasted_within_the_clis_timeout(
    tmp_path: Path, command: str, answer: str
) -> None:
    """The reproducer: the hook waited almost to the CLI's timeout for the
    launcher, then decided with a fresh deadline (answer at 5.08 s under a
    4 s timeout) and could open a second request.

    The deadline's guarantee, as for the small client
    (test_local_gate.py): an answer before the CLI's timeout, never an
    allow the policy did not give. After giving up on the launcher the
    hook has an eighth of the margin (a quarter of a second here) to
    decide by the policy; on a machine too busy for that the allowed call
    is a block that says so (CI's run of 2026-11-28 had one). The policy's
    own answer without a launcher is proven in test_local_gate.py."""
    launcher, api = Blackhole(unix=True), Blackhole()
    policy = tmp_path / "policy.toml"
    policy.write_text(ALLOW_LS)
    try:
        took, code, out, err = timed_hook(
            tmp_path, policy, command, "--url", api.url, "--endpoint", api.url, extra={local.ENV_SOCKET: launcher.url}
        )
    finally:
        launcher.close()
        api.close()
    assert launcher.accepted.is_set(), "the hook asked the launcher"
    assert took < CLI_TIMEOUT_S, f"answered {took:.2f} s after its start, past the CLI's {CLI_TIMEOUT_S:g} s"
    said = decision("gemini", out)
    in_time_block = said == "deny" and "no answer before the CLI's hook timeout" in out
    assert code in (0, 2) and (said == answer or (answer == "allow" and in_time_block)), (code, out, err)
    if answer == "deny":
        assert not api.accepted.is_set(), "no request for a person: the deadline had passed"


@pytest.mark.parametrize("through_launcher", [False, True])
def test_a_policy_file_that_never_opens_is_a_block_before_the_clis_timeout(
    tmp_path: Path, through_launcher: bool
) -> None:
    """A policy path that is a FIFO with no writer: opening it hangs the
    decision (in the hook's child, or on the launcher's thread, where no
    signal can reach it). The backstops answer in time."""
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    gate = LocalGate() if through_launcher else None
    try:
        extra = {local.ENV_SOCKET: gate.path} if gate is not None else {}
        took, code, out, err = timed_hook(tmp_path, fifo, "ls", extra=extra)
    finally:
        if gate is not None:
            # A writer opens the FIFO: the open that hung returns (its answer is long given).
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            gate.close()
    assert took < CLI_TIMEOUT_S, f"answered {took:.2f} s after its start, past the CLI's {CLI_TIMEOUT_S:g} s"
    assert_block("gemini", code, out, err)
    if gate is not None:
        assert gate.answered == 1, "the launcher's backstop answered"


def test_a_silent_control_api_through_the_launcher_is_answered_before_the_clis_timeout(tmp_path: Path) -> None:
    api = Blackhole()
    gate = LocalGate()
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "ask"\n')
    try:
        took, code, out, err = timed_hook(
            tmp_path, policy, "make", "--url", api.url, "--endpoint", api.url, extra={local.ENV_SOCKET: gate.path}
        )
    finally:
        gate.close()
        api.close()
    assert took < CLI_TIMEOUT_S, f"answered {took:.2f} s after its start, past the CLI's {CLI_TIMEOUT_S:g} s"
    assert_block("gemini", code, out, err, failure=False)
    assert gate.answered == 1
