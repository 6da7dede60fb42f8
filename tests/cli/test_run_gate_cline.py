"""``spanvisor run --gate -- cline …`` never starts Cline ungated: Cline
3.0.65 runs a ``PreToolUse`` hook from ``~/.cline/hooks`` only (one given
with ``--hooks-dir`` is never run), so without spanvisor's hook there the
launcher says where to put it and exits 2 before starting anything. With
it, the run goes on (tests/codingagents/test_cline.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spanvisor.clis.cline.launch import HOOK
from spanvisor.launcher.gate_setup import asset


def _run(home: Path, marker: Path) -> subprocess.CompletedProcess[str]:
    # The "CLI": a script that would leave a file behind if it were started.
    fake = home / "cline"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(HOME=str(home), SPANVISOR_DATA_DIR=str(home / "data"), SPANVISOR_LOCAL_GATE="off")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "spanvisor.cli",
            "run",
            "--gate",
            "--endpoint",
            "http://127.0.0.1:9",
            "--",
            str(fake),
            "x y",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_spanvisors_hook_where_cline_reads_it_cline_is_not_started(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    got = _run(tmp_path, marker)
    assert got.returncode == 2, got.stderr
    assert f"{tmp_path}/.cline/hooks/PreToolUse only, which is missing" in got.stderr, got.stderr
    assert not marker.exists(), "Cline was started ungated"
    hook = tmp_path / ".cline" / "hooks" / HOOK
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\necho '{}'\n")
    hook.chmod(0o755)
    got = _run(tmp_path, marker)
    assert got.returncode == 2 and "which is not spanvisor's" in got.stderr, got.stderr
    assert not marker.exists()


def test_with_spanvisors_hook_there_cline_starts(tmp_path: Path) -> None:
    hook = tmp_path / ".cline" / "hooks" / HOOK
    hook.parent.mkdir(parents=True)
    hook.write_bytes(asset("cline", HOOK))
    hook.chmod(0o755)
    marker = tmp_path / "started"
    got = _run(tmp_path, marker)
    assert marker.exists(), got.stderr
