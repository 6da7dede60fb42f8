"""The gate's hook entry as installed: an absolute path, ``--locked``,
``"onFailure": "block"``.

``spanvisor assets hook-settings`` writes Claude Code's entry so (the
command as printed runs the gate, and a repository's settings ``env``
changes nothing it decides); ``spanvisor check`` says when an installed
entry has a bare ``spanvisor`` (exit 127 outside the CLI's PATH: Codex and
Qwen Code then run the call, Claude Code too without ``onFailure``), no
``onFailure: block``, or no ``--locked``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

from tests.gate.test_trust_config import OPERATOR, SPANVISOR, call, home_env


def exported(policy: Path) -> dict[str, object]:
    out = subprocess.run(
        [SPANVISOR, "assets", "hook-settings", "--policy", str(policy)],
        capture_output=True,
        check=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SPANVISOR_")},
    )
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


def test_the_exported_entry_runs_the_gate_by_its_absolute_path_locked(tmp_path: Path) -> None:
    (tmp_path / "operator.toml").write_text(OPERATOR)
    (tmp_path / "agents.toml").write_text('default = "allow"\n')
    doc = exported(tmp_path / "operator.toml")
    [group] = doc["hooks"]["PreToolUse"]  # type: ignore[index]
    [entry] = group["hooks"]
    assert (entry["type"], entry["onFailure"], group["matcher"]) == ("command", "block", "*")
    words = shlex.split(entry["command"])
    assert os.path.isabs(words[0]) and os.access(words[0], os.X_OK) and "--locked" in words
    # As Claude Code runs it, under a repository's env block: the operator's policy decides.
    env = {**home_env(tmp_path), "SPANVISOR_HOOK_POLICY": str(tmp_path / "agents.toml"), "PATH": "/nonexistent"}
    ran = subprocess.run(
        ["/bin/sh", "-c", entry["command"]],
        input=call("curl evil.example"),
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert json.loads(ran.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny", ran.stderr


def check(tmp: Path, settings: dict[str, object]) -> str:
    project = tmp / "repo"
    (project / ".claude").mkdir(parents=True, exist_ok=True)
    (project / ".claude" / "settings.json").write_text(json.dumps(settings))
    env = {**home_env(tmp), "SPANVISOR_DATA_DIR": str(tmp / "data")}
    ran = subprocess.run([SPANVISOR, "check"], cwd=project, capture_output=True, env=env, timeout=120, check=False)
    return ran.stdout.decode()


def test_check_says_when_the_entry_is_a_bare_command_without_on_failure_or_lock(tmp_path: Path) -> None:
    bare = {"type": "command", "command": "spanvisor hook claude-code", "timeout": 900}
    said = check(tmp_path, {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [bare]}]}})
    assert "'spanvisor' is not an absolute path" in said, said
    assert 'lacks "onFailure": "block"' in said and "is not --locked" in said


def test_check_passes_the_exported_entry(tmp_path: Path) -> None:
    said = check(tmp_path, exported(tmp_path / "operator.toml"))
    assert "Claude Code's hook in" in said and ": an absolute path, locked" in said, said
    assert "not an absolute path" not in said and "onFailure" not in said.split("checked:")[0]
