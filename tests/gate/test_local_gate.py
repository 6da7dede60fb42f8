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

from spanvisor.cli.run_gate import LocalGate
from spanvisor.gate import local

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
POLICY = 'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *"]\ndecision = "allow"\n'


@pytest.fixture
def gates() -> Iterator[list[LocalGate]]:
    made: list[LocalGate] = []
    yield made
    for g in made:
        g.close()


def hook(tmp_path: Path, socket_path: str | None, command: str) -> tuple[int, str]:
    (tmp_path / "policy.toml").write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(SPANVISOR_DATA_DIR=str(tmp_path / "data"), SPANVISOR_HOOK_DELIVERY="off")
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
