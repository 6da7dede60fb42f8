"""A SIGINT to ``spanvisor run`` ends its CLI even when the CLI takes its
time over one (issue 64: OpenCode took 62 s, Qwen Code 37 s): the CLI gets
its SIGINT first, then, still there, SIGTERM and SIGKILL to its tree, the
stopper's steps. The task ends ``cancelled`` ("Stopped by SIGINT"), as for
a CLI that acts on the SIGINT at once.

The CLI is a stand-in named ``opencode`` (the launcher knows it by its
command) that ignores SIGINT, writes what it got and when it is ready,
and would otherwise sleep for ten minutes; serve is not running (the
launcher starts the CLI whether or not its records go anywhere)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import wait_until

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
pytestmark = pytest.mark.timeout_s(180)

STUBBORN = f"""#!{sys.executable}
import os, signal, sys, time
here = os.environ["FAKE_DIR"]
def note(what):
    with open(os.path.join(here, "got"), "a") as f:
        f.write(what + "\\n")
signal.signal(signal.SIGINT, lambda s, f: note("INT"))  # acted on a minute later, as OpenCode does
def term(s, f):
    note("TERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, term)
open(os.path.join(here, "ready"), "w").close()
time.sleep(600)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_cli_that_ignores_sigint_is_ended_by_the_stoppers_steps(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "opencode"
    fake.write_text(STUBBORN)
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        FAKE_DIR=str(tmp_path),
        HOME=str(tmp_path / "home"),
        SPANVISOR_DATA_DIR=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        SPANVISOR_OTLP_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        SPANVISOR_CONTROL_URL=f"http://127.0.0.1:{_closed_port()}",
    )
    launcher = subprocess.Popen(
        [SPANVISOR, "run", "--timeout", "1", "--", "opencode", "run", "fix it"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no terminal: the launcher holds none, as in a script or CI
    )
    try:
        wait_until((tmp_path / "ready").exists, 120.0, "the CLI started")
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    got = (tmp_path / "got").read_text().split()
    assert got[0] == "INT" and "TERM" in got, (got, err)  # its SIGINT first (a second one), then the next step
    assert launcher.returncode == 143, (launcher.returncode, err)  # the CLI's own exit, passed on
    # serve is away: the task's end waits in the spool, as what it is.
    kept = "".join(p.read_text() for p in (tmp_path / "data").rglob("*.json"))
    assert "cancelled" in kept, kept[:2000]
    assert "Stopped by SIGINT" in kept, kept[:2000]
