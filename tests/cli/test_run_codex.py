"""``spanvisor run`` and Codex's hook trust: the flag only where every
configured hook is spanvisor's gate."""

from __future__ import annotations

from pathlib import Path

from spanvisor.cli import run_codex

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
