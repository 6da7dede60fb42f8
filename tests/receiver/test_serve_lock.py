"""One `spanvisor serve` per data dir's journal, and none on a held port.

A second serve on the same data dir replayed the running one's journal to
its console before failing on a port. It now stops at once, before
replaying anything, with one line naming the other's pid; a serve that was
killed leaves no lock behind. A serve whose port another process listens
on stops the same way, naming the port and its setting, before replaying
its journal (it used to replay it to the console, then fail on the bind).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from serve_proc import ServeProcess, console_env


def test_a_second_serve_on_the_same_journal_stops_at_once_and_a_killed_one_leaves_no_lock(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServeProcess(data, console_env(data))
    try:
        assert first.proc is not None
        second = subprocess.run(
            [sys.executable, "-m", "spanvisor.cli", "serve"],
            env=console_env(data),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 2, second
        assert second.stderr.strip().splitlines() == [
            f"spanvisor: configuration error: another spanvisor serve (pid {first.proc.pid}) runs on this data dir "
            f"({data}); stop it, or give this one its own SPANVISOR_DATA_DIR (each serve keeps its own journal)"
        ]
        assert "journal" not in second.stdout and "replay" not in second.stdout.lower()  # nothing was replayed
        first.kill()
        first.start()  # the kill left no lock: the same data dir serves again
        assert first.alive
    finally:
        first.stop()


def test_a_held_port_stops_serve_before_it_replays_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServeProcess(data, console_env(data))  # leaves a journal behind it
    first.stop()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = dict(console_env(data), SPANVISOR_OTLP_HTTP_PORT=str(port))
        second = subprocess.run(
            [sys.executable, "-m", "spanvisor.cli", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert second.returncode == 2, second
    [line] = second.stderr.strip().splitlines()
    assert line.startswith(f"spanvisor: configuration error: port {port} (SPANVISOR_OTLP_HTTP_PORT) on 127.0.0.1 ")
    assert "in use by another process" in line and "--http-port" in line
    assert "journal" not in second.stdout and "replay" not in second.stdout.lower()
    assert "another user" not in line  # this user's own socket: nobody else's to name


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_a_port_another_user_holds_is_said_to_be_theirs(tmp_path: Path) -> None:
    """On a shared machine, another user may be squatting serve's port:
    serve says whose socket holds it."""
    from tests.receiver.test_first_start_token import _squatter

    data = tmp_path / "data"
    with _squatter() as squatter:
        port = squatter.url.rpartition(":")[2]
        env = dict(console_env(data), SPANVISOR_OTLP_HTTP_PORT=port)
        second = subprocess.run(
            [sys.executable, "-m", "spanvisor.cli", "serve"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 2, second
    [line] = second.stderr.strip().splitlines()
    theirs = f"a socket of another user (uid 65534; this is uid {os.getuid()})"
    assert f"in use by another process (Address already in use), {theirs}" in line
