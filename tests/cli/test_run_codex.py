"""``spanvisor run`` and Codex's hook trust: the flag only where every
configured hook is spanvisor's gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spanvisor.clis.codex import trust as run_codex
from tests.cli.coding_harness import TOKEN, Serve, clean_env
from tests.waiting import wait_until

GATE = '[[hooks.PreToolUse]]\nmatcher = "*"\n[[hooks.PreToolUse.hooks]]\ntype = "command"\ncommand = "spanvisor hook codex"\n'
OTHER = '[[hooks.PreToolUse]]\n[[hooks.PreToolUse.hooks]]\ntype = "command"\ncommand = "./audit.sh"\n'


def _home(tmp_path: Path, config: str) -> dict[str, str]:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(config)
    return {"CODEX_HOME": str(home)}


def test_only_the_gate_gets_the_flag_after_exec(tmp_path: Path) -> None:
    argv, said = run_codex.trusted(
        ["codex", "-c", "x=1", "exec", "--json", "do it"], _home(tmp_path, GATE), str(tmp_path)
    )
    assert argv == ["codex", "-c", "x=1", "exec", run_codex.FLAG, "--json", "do it"]
    assert said is not None and run_codex.FLAG in said


def test_another_hook_beside_the_gate_gets_no_flag_and_a_warning(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    (project / ".codex").mkdir(parents=True)
    (project / ".codex" / "config.toml").write_text(OTHER)
    argv, said = run_codex.trusted(["codex", "exec", "do it"], _home(tmp_path, GATE), str(project))
    assert argv == ["codex", "exec", "do it"]
    assert said is not None and "may skip them all silently" in said


def test_no_hooks_no_flag(tmp_path: Path) -> None:
    assert run_codex.trusted(["codex", "exec", "x"], _home(tmp_path, 'model = "m"\n'), str(tmp_path)) == (
        ["codex", "exec", "x"],
        None,
    )


def test_a_session_whose_hooks_would_not_run_carries_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch, tmp_path)
    serve = Serve(tmp_path / "serve")
    try:
        fake = tmp_path / "bin" / "codex"  # the launcher knows the CLI by its name
        fake.parent.mkdir()
        fake.write_text("#!/bin/sh\nsleep 1\n")
        fake.chmod(0o755)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SPANVISOR_OTLP_TOKEN": TOKEN}
        env |= _home(tmp_path, GATE + OTHER.replace("PreToolUse", "PostToolUse"))
        launcher = [sys.executable, "-m", "spanvisor.cli", "run", "--endpoint", serve.base, "--task-id", "cx-warn"]
        ran = subprocess.run(
            [*launcher, "--", str(fake), "exec", "hi"], env=env, capture_output=True, timeout=120, check=False
        )
        assert "may skip them all silently" in ran.stderr.decode()
        cps = wait_until(lambda: serve.checkpoints("cx-warn"), 120, "the warning on the task")
        assert any("hooks are not trusted" in str(c.task.message) for c in cps), cps
    finally:
        serve.close()
