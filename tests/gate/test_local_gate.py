"""The launcher's local gate (``spanvisor run``): a hook asks the warm
launcher over a private socket and answers exactly as the command hook
would; a hook whose launcher is gone decides by itself; two sessions'
hooks never cross; only the launching user can connect."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.gate import local
from spanvisor.launcher.gate import LocalGate
from tests.waiting import wait_until

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
POLICY = 'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *"]\ndecision = "allow"\n'


@pytest.fixture
def gates() -> Iterator[list[LocalGate]]:
    made: list[LocalGate] = []
    yield made
    for g in made:
        g.close()


def hook(tmp_path: Path, socket_path: str | None, command: str, extra: dict[str, str] | None = None) -> tuple[int, str]:
    (tmp_path / "policy.toml").write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(SPANVISOR_DATA_DIR=str(tmp_path / "data"), SPANVISOR_HOOK_DELIVERY="off", **(extra or {}))
    if socket_path is not None:
        env[local.ENV_SOCKET] = socket_path
    stdin = json.dumps({"session_id": "s", "tool_name": "Bash", "tool_input": {"command": command}}).encode()
    proc = subprocess.run(
        [SPANVISOR, "hook", "claude-code", "--policy", str(tmp_path / "policy.toml")],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    said = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return proc.returncode, said["hookSpecificOutput"]["permissionDecision"]


def test_only_its_user_can_reach_the_socket(gates: list[LocalGate]) -> None:
    gate = LocalGate()
    gates.append(gate)
    assert stat.S_IMODE(os.stat(gate.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(gate.path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(gate.path).st_mode)


def test_a_hook_through_the_launcher_answers_as_the_command_hook(tmp_path: Path, gates: list[LocalGate]) -> None:
    gate = LocalGate()
    gates.append(gate)
    assert hook(tmp_path, gate.path, "ls -la") == (0, "allow")
    assert hook(tmp_path, gate.path, "ls && rm -rf x") == (0, "deny")
    assert hook(tmp_path, None, "ls && rm -rf x") == (0, "deny")  # the same without the launcher
    assert gate.answered == 2


def test_a_hook_whose_launcher_is_gone_decides_by_itself(tmp_path: Path, gates: list[LocalGate]) -> None:
    gate = LocalGate()
    path = gate.path
    gate.close()
    assert hook(tmp_path, path, "ls -la") == (0, "allow")
    assert hook(tmp_path, path, "ls; rm x") == (0, "deny")


def test_two_sessions_hooks_never_cross(tmp_path: Path, gates: list[LocalGate]) -> None:
    one, two = LocalGate(), LocalGate()
    gates += [one, two]
    assert one.path != two.path
    hook(tmp_path, one.path, "ls")
    hook(tmp_path, one.path, "ls -la")
    hook(tmp_path, two.path, "ls")
    assert (one.answered, two.answered) == (2, 1)


def test_the_session_is_the_launchers_whatever_the_hooks_environment_says(
    tmp_path: Path, gates: list[LocalGate]
) -> None:
    """Claude Code applies a repository's settings ``env`` block to its
    hooks: one naming another task (and owner) would file the session's
    notes and requests there and look for that task's cancel, not this
    one's. Under the launcher, its hooks are decided under the session the
    launcher started (issue 62)."""
    gate = LocalGate({"SPANVISOR_TASK_ID": "launched-1", "SPANVISOR_TASK_AGENT": "claude-code"})
    gates.append(gate)
    hostile = {"SPANVISOR_TASK_ID": "someone-else", "SPANVISOR_TASK_OWNER": "bob"}
    assert hook(tmp_path, gate.path, "ls && rm -rf x", hostile) == (0, "deny")
    spool = tmp_path / "data" / "hook-spool"
    # The note is written after the answer (the hook has exited by then).
    notes = wait_until(lambda: [json.loads(p.read_text()) for p in spool.glob("*.json")], 30, "the denial's note")
    for n in notes:
        assert n["session"][0] == "launched-1" and n["session"][2] is True, n["session"]
        assert {attrs.get("agent.task.id") for _, attrs, _ in n["records"]} == {"launched-1"}


def test_garbage_on_the_socket_changes_nothing(tmp_path: Path, gates: list[LocalGate]) -> None:
    gate = LocalGate()
    gates.append(gate)
    for junk in (b"", b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff", local.frame({"argv": 3, "stdin": []})):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(gate.path)
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(30)
            assert s.recv(100) == b"", "no answer to garbage"
    assert hook(tmp_path, gate.path, "ls") == (0, "allow")
    assert gate.answered == 1


def client_hook(
    gate: LocalGate, tmp_path: Path, command: str, socket_path: str | None = None, *args: str
) -> tuple[int, str, str, float]:
    """The launcher's small client (what `spanvisor hook` is on the CLI's
    PATH under `spanvisor run`): (status, decision, stderr, seconds)."""
    import time

    assert gate.bin is not None, "the launcher wrote its client"
    (tmp_path / "policy.toml").write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(SPANVISOR_DATA_DIR=str(tmp_path / "data"), SPANVISOR_HOOK_DELIVERY="off")
    env[local.ENV_SOCKET] = socket_path or gate.path
    stdin = json.dumps({"session_id": "s", "tool_name": "Bash", "tool_input": {"command": command}}).encode()
    argv = [os.path.join(gate.bin, "spanvisor"), "hook", "claude-code", "--policy", str(tmp_path / "policy.toml")]
    t0 = time.monotonic()
    proc = subprocess.run([*argv, *args], input=stdin, capture_output=True, env=env, timeout=120, check=False)
    took = time.monotonic() - t0
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
    said = json.loads(lines[-1])["hookSpecificOutput"]["permissionDecision"] if lines else ""
    return proc.returncode, said, proc.stderr.decode(), took


def test_the_small_client_answers_as_the_command_hook(tmp_path: Path, gates: list[LocalGate]) -> None:
    gate = LocalGate()
    gates.append(gate)
    assert client_hook(gate, tmp_path, "ls -la")[:2] == (0, "allow")
    assert client_hook(gate, tmp_path, "ls && rm -rf x")[:2] == (0, "deny")
    assert gate.answered == 2, "the launcher answered both"
    assert stat.S_IMODE(os.stat(gate.bin or "").st_mode) == 0o700


def test_the_small_client_whose_launcher_is_gone_becomes_the_full_hook(tmp_path: Path, gates: list[LocalGate]) -> None:
    gate = LocalGate()
    gates.append(gate)
    other = LocalGate()
    gone = other.path
    other.close()
    assert client_hook(gate, tmp_path, "ls -la", gone)[:2] == (0, "allow")
    assert client_hook(gate, tmp_path, "ls; rm x", gone)[:2] == (0, "deny")
    assert gate.answered == 0


def test_the_small_client_of_a_silent_launcher_answers_before_the_clis_timeout(
    tmp_path: Path, gates: list[LocalGate]
) -> None:
    from tests.gate.blackhole import Blackhole

    """The deadline's guarantee, not the fast path's win: before the CLI's
    timeout there is an answer, the policy's own (the client decided
    itself once the launcher stayed silent) or, on a machine too busy for
    that, a block that says so. (The client waits for a silent launcher
    until just before the deadline, so a roomy timeout only makes this test
    long; the fallback's own answer is proven with a launcher that is gone,
    above.)"""
    gate = LocalGate()
    gates.append(gate)
    hole = Blackhole(unix=True)
    try:
        code, said, err, took = client_hook(gate, tmp_path, "ls -la", hole.path, "--cli-timeout", "4")
    finally:
        hole.close()
    assert took < 4.0, f"answered after {took:.2f} s"
    assert (code, said) == (0, "allow") or ((code, said) == (2, "deny") and "timeout" in err), (code, said, err)


def test_a_signal_to_the_small_client_is_a_block(tmp_path: Path, gates: list[LocalGate]) -> None:
    import signal
    import time

    from tests.gate.blackhole import Blackhole

    gate = LocalGate()
    gates.append(gate)
    assert gate.bin is not None
    hole = Blackhole(unix=True)
    env = {**os.environ, local.ENV_SOCKET: hole.path}
    proc = subprocess.Popen(
        [os.path.join(gate.bin, "spanvisor"), "hook", "gemini"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b'{"session_id": "s", "tool_name": "x", "tool_input": {}}')
        proc.stdin.close()
        proc.stdin = None
        assert hole.accepted.wait(60)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        hole.close()
    assert proc.returncode == 2 and json.loads(out)["decision"] == "deny", (out, err)
