"""Python that spanvisor starts never imports from the working directory
(issue 66): a ``spanvisor/`` folder where the demo is started must not hide
the installed package from the people's ``spanvisor approve`` it runs.

``python -m`` puts the cwd first on ``sys.path``; the demo's subprocesses
run with ``-P``. Before, alice's and bob's approvals failed with an
ImportError, ledger timed out, and the demo still exited 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from spanvisor.cli import demo_signoff
from spanvisor.config import Config

pytestmark = pytest.mark.slow

HOSTILE = """from pathlib import Path
Path({marker!r}).write_text("imported from the working directory")
raise ImportError("this is not spanvisor")
"""


def test_the_demo_started_beside_a_spanvisor_folder_never_imports_it(tmp_path: Path) -> None:
    here = tmp_path / "work"
    (here / "spanvisor").mkdir(parents=True)
    marker = tmp_path / "imported"
    (here / "spanvisor" / "__init__.py").write_text(HOSTILE.format(marker=str(marker)))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    clean.pop("PYTHONPATH", None)
    clean.pop("PYTHONSAFEPATH", None)  # the fix must not rest on the caller's environment
    clean.update(SPANVISOR_DATA_DIR=str(tmp_path / "data"), SPANVISOR_CONSOLE_COLOR="never", SPANVISOR_SINKS="console")
    # The console script, as a person runs it: its own import of spanvisor
    # is the installed one, the question is what it starts.
    demo = subprocess.run(
        [str(Path(sys.executable).with_name("spanvisor")), "demo", "--fast"],
        cwd=here,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = demo.stdout + demo.stderr
    assert not marker.exists(), out
    assert demo.returncode == 0, out
    assert "Approved: " in out and "as bob" in out, out
    assert "✅ [ledger] approved by bob" in out, out


def test_a_failed_approval_is_a_failure_of_the_demo() -> None:
    # A person's `approve` that answers with an error (no control API at
    # that address) goes into the demo's failures: it then exits 1.
    failed: list[str] = []
    demo_signoff._answer("http://127.0.0.1:9", "t1", {"alice": "x"}, threading.Event(), failed, wait_s=0.0)
    assert len(failed) == 1 and failed[0].startswith("alice's `approve`"), failed


def test_an_audit_verify_that_fails_is_a_failure_of_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    answered = subprocess.CompletedProcess[str](["spanvisor"], 1, "chain broken at 3\n", "")
    monkeypatch.setattr(demo_signoff, "_cli", lambda *a, **k: answered)
    postgres = types.SimpleNamespace(name="postgres")
    assert demo_signoff.verify_chain(Config.load(), [postgres], flushed=True) is False
    answered.returncode = 0
    assert demo_signoff.verify_chain(Config.load(), [postgres], flushed=True) is True
