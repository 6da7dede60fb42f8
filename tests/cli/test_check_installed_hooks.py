"""``spanvisor check`` looks at every CLI's installed gate (issue 62): for
each gate entry in the settings its adapter names, whether it can fail open
(a command that is not an absolute path or not there, one that is not
locked) and whether its file is one the agent's user may change; and a CLI
on PATH whose settings run no gate. The real command, in a HOME and PATH of
the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))


def _check(home: Path, bin_dir: Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "GEMINI_", "QWEN_", "CODEX_"))}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}/usr/bin:/bin", SPANVISOR_DATA_DIR=str(home / "data"))
    env.update(SPANVISOR_SINKS="console", GEMINI_CLI_SYSTEM_SETTINGS_PATH=str(home / "no-system-settings.json"))
    env["QWEN_CODE_SYSTEM_SETTINGS_PATH"] = str(home / "no-system-settings.json")
    done = subprocess.run(
        [SPANVISOR, "check"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    return done.stdout + done.stderr


def _fake_cli(bin_dir: Path, name: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def test_each_clis_gate_entry_is_read_and_what_fails_open_is_said(tmp_path: Path) -> None:
    home, bin_dir, work = tmp_path / "home", tmp_path / "bin", tmp_path / "work"
    for d in (home / ".gemini", home / ".codex", bin_dir, work):
        d.mkdir(parents=True)
    # Gemini CLI: a bare command that takes its policy from its environment.
    bare = {
        "hooks": {"BeforeTool": [{"matcher": "*", "hooks": [{"type": "command", "command": "spanvisor hook gemini"}]}]}
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(bare))
    # Codex: absolute and locked, in the user's own file.
    locked = f"{SPANVISOR} hook codex --locked --policy /etc/spanvisor/hook-policy.toml"
    (home / ".codex" / "config.toml").write_text(
        f'[[hooks.PreToolUse]]\n[[hooks.PreToolUse.hooks]]\ntype = "command"\ncommand = "{locked}"\ntimeout = 900\n'
    )
    (home / ".codex" / "config.toml").chmod(0o666)  # others may change it too
    # Qwen Code on PATH, with no gate in any of its settings.
    _fake_cli(bin_dir, "qwen")

    said = _check(home, bin_dir, work)
    gemini = home / ".gemini" / "settings.json"
    assert f"Gemini CLI's hook in {gemini}: its command 'spanvisor' is not an absolute path" in said, said
    assert f"Gemini CLI's hook in {gemini}: it is not --locked" in said, said
    codex = home / ".codex" / "config.toml"
    assert f"Codex's hook in {codex}: an absolute path, locked; its file is not root's alone" in said, said
    assert "mode 0666): it guards against mistakes, not against a hostile agent" in said
    assert "Qwen Code (qwen on PATH): none of its settings runs the gate" in said, said
    # A CLI that is not installed and has no settings: nothing said of it.
    assert "Copilot" not in said


def test_a_system_gate_entry_is_locked_and_a_missing_command_is_said(tmp_path: Path) -> None:
    home, bin_dir, work = tmp_path / "home", tmp_path / "bin", tmp_path / "work"
    for d in (home / ".gemini", bin_dir, work):
        d.mkdir(parents=True)
    gone = str(tmp_path / "removed" / "spanvisor")
    entries = [
        {"type": "command", "command": f"{SPANVISOR} hook gemini --gate /run/spanvisor-gate/gate.sock"},
        {"type": "command", "command": f"{gone} hook gemini --locked --policy /p.toml"},
    ]
    doc = {"hooks": {"BeforeTool": [{"matcher": "*", "hooks": entries}]}}
    (home / ".gemini" / "settings.json").write_text(json.dumps(doc))
    said = _check(home, bin_dir, work)
    assert "Gemini CLI's hook in" in said and ": an absolute path, locked" in said, said
    assert f"its command {gone} is not there or not executable" in said, said
    assert "it is not --locked" not in said, said


def test_cline_on_path_is_said_to_have_no_place_out_of_its_users_reach(tmp_path: Path) -> None:
    """Cline 3.0.65 runs hooks from its user's and the repository's folders
    only: whatever its hook holds, check says it guards against mistakes."""
    home, bin_dir, work = tmp_path / "home", tmp_path / "bin", tmp_path / "work"
    for d in (home, bin_dir, work):
        d.mkdir(parents=True)
    _fake_cli(bin_dir, "cline")
    said = _check(home, bin_dir, work)
    assert "Cline (cline on PATH) runs hooks from places its user and the repository write" in said, said
    assert "~/.cline/hooks" in said and "not a hostile agent" in said


def test_factory_droid_without_managed_hooks_only_is_said_and_a_repository_turning_hooks_off_fails(
    tmp_path: Path,
) -> None:
    """Without ``allowManagedHooksOnly`` in its system-managed settings, a
    repository's ``hooks.hooksDisabled`` (or a ``hooks.json``'s) turns every
    hook of Factory Droid off, the gate's too: said for each such file up to
    the repository's root."""
    home, bin_dir, repo = tmp_path / "home", tmp_path / "bin", tmp_path / "repo"
    work = repo / "src"
    for d in (home, bin_dir, work / ".factory", repo / ".git", repo / ".factory"):
        d.mkdir(parents=True)
    _fake_cli(bin_dir, "droid")
    (work / ".factory" / "settings.json").write_text(json.dumps({"hooks": {"hooksDisabled": True}}))
    (repo / ".factory" / "hooks.json").write_text(json.dumps({"hooksDisabled": True}))
    (tmp_path / ".factory").mkdir()  # above the repository's root: not its
    (tmp_path / ".factory" / "hooks.json").write_text(json.dumps({"hooksDisabled": True}))
    said = _check(home, bin_dir, work)
    assert "/etc/factory/settings.json does not set allowManagedHooksOnly" in said, said
    assert f"{work / '.factory' / 'settings.json'} turns Factory Droid's hooks off" in said, said
    assert f"{repo / '.factory' / 'hooks.json'} turns Factory Droid's hooks off" in said, said
    assert f"{tmp_path / '.factory' / 'hooks.json'}" not in said, said


def test_factory_droids_managed_hooks_only_passes(tmp_path: Path) -> None:
    from spanvisor.clis import registry
    from spanvisor.clis.droid import check

    system = tmp_path / "settings.json"
    system.write_text(json.dumps({"allowManagedHooksOnly": True}))
    (tmp_path / ".factory").mkdir()
    (tmp_path / ".factory" / "settings.json").write_text(json.dumps({"hooks": {"hooksDisabled": True}}))
    bad, warned, ok = check.look(registry.need("droid"), {"HOME": str(tmp_path), "PATH": ""}, tmp_path, system)
    assert (bad, warned) == ([], []) and ok == [
        f"Factory Droid: {system} sets allowManagedHooksOnly: no user's or repository's hook runs or turns its gate off"
    ]


def test_factory_droids_system_file_that_cannot_be_read_is_a_problem(tmp_path: Path) -> None:
    """Droid takes a system file it cannot read or parse as an empty level:
    no managed hook runs, the gate's included."""
    from spanvisor.clis import registry
    from spanvisor.clis.droid import check

    system = tmp_path / "settings.json"
    system.write_text("{ not json")
    (tmp_path / ".factory").mkdir()
    bad, warned, ok = check.look(registry.need("droid"), {"HOME": str(tmp_path), "PATH": ""}, tmp_path, system)
    assert bad == [
        f"{system} exists but cannot be read or is not JSON: Factory Droid then runs none of its hooks, the gate's included"
    ]
    assert (warned, ok) == ([], [])
