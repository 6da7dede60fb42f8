"""Where the embedded test servers keep their files (tests/conftest_pg.py):
RAM when it has room, and a dead session's leftovers there are removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest_pg import PREFIXES, SHM, scratch_dir, sweep_stale_servers


def test_test_pg_dir_chooses_and_dev_shm_needs_room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_PG_DIR", str(tmp_path))
    assert scratch_dir() == tmp_path
    monkeypatch.delenv("TEST_PG_DIR")
    monkeypatch.setattr("tests.conftest_pg.SHM_NEEDS", 2**62)
    assert scratch_dir() is None


@pytest.mark.skipif(not (SHM.is_dir() and os.access(SHM, os.W_OK)), reason="no writable /dev/shm")
def test_only_a_dead_sessions_old_server_is_swept() -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    dead_pid = dead.stdout.strip()
    made: dict[str, Path] = {}
    for name, holder, age_s in (
        ("dead", dead_pid, 3600),
        ("held", str(os.getpid()), 3600),
        ("young", dead_pid, 0),
    ):
        d = Path(tempfile.mkdtemp(prefix=f"{PREFIXES[0]}{name}-", dir=SHM))
        (d / "postgres").mkdir()
        (d / "postgres" / "holders").write_text(holder)
        then = time.time() - age_s
        os.utime(d, (then, then))
        made[name] = d
    try:
        gone = sweep_stale_servers()
        assert made["dead"] in gone and not made["dead"].exists()
        assert made["held"].exists() and made["young"].exists()
    finally:
        for d in made.values():
            shutil.rmtree(d, ignore_errors=True)
