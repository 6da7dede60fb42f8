"""A real ``spanvisor serve`` reloads its central policy when a file
changes and on SIGHUP, keeps the version in force when a reload fails (and
says so), and refuses to start with a policy it cannot read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.receiver.serve_proc import ServeProcess, console_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow]

V1 = 'name = "acme"\n[[rule]]\nname = "no-rm"\ncommand = "rm *"\ndecision = "deny"\nreason = "not here: v1"\n'


def policy_doc(serve: ServeProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{serve.http}/v1/control/policy", timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def same_size_and_time(path: Path, text: str) -> None:
    """Change the file so that its size and time stay as they were: only
    a SIGHUP tells serve."""
    st = path.stat()
    assert len(text.encode()) == st.st_size
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_serve_reloads_its_policy_on_a_change_and_on_sighup(tmp_path: Path) -> None:
    policy = tmp_path / "central.toml"
    policy.write_text(V1)
    serve = ServeProcess(tmp_path / "serve", console_env(tmp_path / "serve", SPANVISOR_POLICY=str(policy)))
    try:
        v1 = policy_doc(serve)
        assert v1["version"].startswith("acme@") and v1["rules"][0]["reason"] == "not here: v1"
        # A change of the file: seen within the poll.
        policy.write_text(V1.replace("v1", "v2 (a longer reason)"))
        v2 = wait_until(lambda: (d := policy_doc(serve))["version"] != v1["version"] and d, 30, "the reload")
        assert v2["rules"][0]["reason"] == "not here: v2 (a longer reason)"
        assert "central policy reloaded (a policy file changed)" in serve.log_text()
        # A change the poll cannot see: SIGHUP.
        same_size_and_time(policy, V1.replace("v1", "v2 (a longer reasoN)"))
        time.sleep(2.5)
        assert policy_doc(serve)["version"] == v2["version"], "the poll saw no change"
        assert serve.proc is not None
        serve.proc.send_signal(signal.SIGHUP)
        v3 = wait_until(lambda: (d := policy_doc(serve))["version"] != v2["version"] and d, 30, "the SIGHUP reload")
        assert v3["rules"][0]["reason"].endswith("reasoN)") and serve.alive
        assert "central policy reloaded (SIGHUP)" in serve.log_text()
        # A reload that fails keeps the version in force, and says why.
        policy.write_text('default = "alow"\n')
        doc = wait_until(lambda: (d := policy_doc(serve))["reload_error"] and d, 30, "the failed reload")
        assert doc["version"] == v3["version"] and "alow" in doc["reload_error"]
        assert "stays in force" in serve.log_text()
    finally:
        serve.stop()


def test_serve_does_not_start_with_a_policy_it_cannot_read(tmp_path: Path) -> None:
    policy = tmp_path / "central.toml"
    policy.write_text('[[rule]]\nname = "x"\ndecision = "ask"\napprovers = 9\n')
    env = console_env(tmp_path / "serve", SPANVISOR_POLICY=str(policy))
    done = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "SPANVISOR_POLICY" in done.stderr and "approvers must be a whole number from 1 to 5" in done.stderr
