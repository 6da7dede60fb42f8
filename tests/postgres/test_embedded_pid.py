"""The embedded server's ``postmaster.pid`` after a crash: the pid in it may
belong to another process by the time anyone reads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spanvisor_postgres.embedded import EmbeddedPostgres


def test_a_pid_left_by_a_crashed_server_is_neither_taken_for_it_nor_signalled(tmp_path: Path) -> None:
    root = tmp_path / "postgres"
    pgdata = root / "pgdata"
    pgdata.mkdir(parents=True)
    # A process that now holds the pid a crashed postmaster left behind.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], cwd=tmp_path)
    try:
        (pgdata / "postmaster.pid").write_text(f"{other.pid}\n{pgdata}\n")
        server = EmbeddedPostgres(root, durable=False)
        assert not server.running()
        server.stop()  # what `spanvisor db stop` and the tests' sweep call
        assert other.poll() is None, "stop() signalled a process that is not the server"
    finally:
        other.kill()
        other.wait()
