"""The CLI's own hook timeout, read where the CLI reads it: a gate hook
entry with a timeout shorter than the default the hook would assume is
the deadline (else the answer could come after the CLI gave up and ran
the call); the launcher reads the settings a Claude Code session was
started with and says once when a person would get less time than the
policy gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spanvisor.gate import clitimeout
from tests.gate.blackhole import Blackhole
from tests.gate.test_attack import SPANVISOR, assert_block, env_for


def _claude_settings(timeout: float | None, command: str = "spanvisor hook claude-code") -> str:
    entry: dict[str, object] = {"type": "command", "command": command}
    if timeout is not None:
        entry["timeout"] = timeout
    return json.dumps({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [entry]}]}})


def test_each_clis_settings_are_read_and_the_shortest_gate_entry_wins(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    (home / ".claude").mkdir(parents=True)
    (project / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(_claude_settings(900))
    (project / ".claude" / "settings.local.json").write_text(_claude_settings(45))
    (project / ".claude" / "settings.json").write_text(_claude_settings(5, command="./other-hook.sh"))
    env = {"HOME": str(home)}
    assert sorted(clitimeout.configured("claude-code", env, str(project))) == [45.0, 900.0]
    assert clitimeout.limit("claude-code", None, env, str(project)) == 45.0
    assert clitimeout.limit("claude-code", 30.0, env, str(project)) == 30.0
    (home / ".gemini").mkdir()
    entry: dict[str, object] = {"type": "command", "command": "spanvisor hook gemini"}
    gemini = {"hooks": {"BeforeTool": [{"hooks": [entry]}]}}
    (home / ".gemini" / "settings.json").write_text(json.dumps(gemini))
    assert clitimeout.limit("gemini", None, env, str(project)) == 60.0  # no timeout: Gemini CLI's default
    entry["timeout"] = 12_000
    (home / ".gemini" / "settings.json").write_text(json.dumps(gemini))
    assert clitimeout.limit("gemini", 900.0, env, str(project)) == 12.0  # milliseconds there
    codex = home / ".codex"
    codex.mkdir()
    (codex / "config.toml").write_text(
        '[[hooks.PreToolUse]]\n[[hooks.PreToolUse.hooks]]\ntype = "command"\ncommand = "spanvisor hook codex"\ntimeout = 20\n'
    )
    assert clitimeout.limit("codex", None, env, str(project)) == 20.0
    # A PermissionRequest entry handing the call to the terminal is no gate: its timeout is not the deadline.
    notice = {"type": "command", "command": "spanvisor hook claude-code --at-terminal", "timeout": 5}
    settings = {"hooks": {"PermissionRequest": [{"matcher": "*", "hooks": [notice]}]}}
    (project / ".claude" / "settings.json").write_text(json.dumps(settings))
    assert clitimeout.limit("claude-code", None, env, str(project)) == 45.0
    (home / ".claude" / "settings.json").write_text("{not json")
    assert clitimeout.limit("claude-code", None, env, str(project)) == 45.0, "a broken file is skipped"


def test_without_cli_timeout_the_hook_answers_before_the_timeout_its_settings_give(tmp_path: Path) -> None:
    """No --cli-timeout; the project's .claude/settings.json gives the gate
    4 s (the hook would otherwise assume Claude Code's 600 s and let a
    silent control API hold it past the CLI's limit)."""
    project = tmp_path / "project"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "settings.json").write_text(_claude_settings(4))
    (tmp_path / "policy.toml").write_text('default = "ask"\n')
    hole = Blackhole()
    stdin = json.dumps({"session_id": "s1", "tool_name": "Bash", "tool_input": {"command": "make"}})
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            [SPANVISOR, "hook", "claude-code", "--policy", str(tmp_path / "policy.toml"), "--url", hole.url],
            input=stdin.encode(),
            capture_output=True,
            cwd=project,
            env={**env_for(tmp_path), "HOME": str(tmp_path / "home"), "SPANVISOR_OTLP_ENDPOINT": hole.url},
            timeout=120,
            check=False,
        )
        took = time.monotonic() - t0
    finally:
        hole.close()
    assert took < 4.0, f"answered after {took:.2f} s"
    assert_block("claude-code", proc.returncode, proc.stdout.decode(), proc.stderr.decode(), failure=False)


def test_the_launcher_reads_the_settings_its_cli_was_started_with(tmp_path: Path) -> None:
    file = tmp_path / "s.json"
    file.write_text(_claude_settings(30))
    argv = ["spanvisor", "run", "--", "claude", "-p", "x", "--settings", str(file)]
    assert clitimeout.launched_settings(argv, str(tmp_path)) == [str(file)]
    inline = ["spanvisor", "run", "--", "claude", "--settings", _claude_settings(12)]
    [written] = clitimeout.launched_settings(inline, str(tmp_path))
    env = {"HOME": str(tmp_path), clitimeout.ENV_SETTINGS: written}
    assert clitimeout.limit("claude-code", None, env, str(tmp_path)) == 12.0
    assert clitimeout.launched_cli(inline) == "claude-code"


@pytest.mark.slow
def test_spanvisor_run_says_once_when_a_person_would_get_less_than_the_policys_time(tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(_claude_settings(60))
    (tmp_path / "policy.toml").write_text("timeout = 300\n")
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env |= {"HOME": str(tmp_path), "SPANVISOR_HOOK_POLICY": str(tmp_path / "policy.toml")}
    env |= {"SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9", "SPANVISOR_DATA_DIR": str(tmp_path / "data")}
    launcher = [sys.executable, "-m", "spanvisor.cli", "run", "--"]
    ran = subprocess.run(
        [*launcher, str(fake), "-p", "hi", "--output-format", "json", "--settings", str(settings)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = [ln for ln in ran.stderr.splitlines() if "a person gets" in ln]
    assert len(said) == 1 and "60 s" in said[0] and "300 s" in said[0], ran.stderr
