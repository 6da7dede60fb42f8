"""``spanvisor policy check`` and ``policy test`` as a team's CI runs them
(the real command), on docs/reference/policy.md's own examples and on broken
policies and cases; ``spanvisor check`` on ``SPANVISOR_POLICY``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "policy.md"


def spanvisor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
        check=False,
    )


def _blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)


def test_the_guides_policy_reads_and_passes_the_guides_cases(tmp_path: Path) -> None:
    policy = next(b for b in _blocks() if "[[rule]]" in b and 'name = "acme-security"' in b)
    cases = next(b for b in _blocks() if "[[case]]" in b)
    (tmp_path / "central.toml").write_text(policy)
    (tmp_path / "cases.toml").write_text(cases)
    checked = spanvisor("policy", "check", str(tmp_path / "central.toml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(
        r"✓ .*central.toml: 6 rules, every one reachable, version acme-security@[0-9a-f]{12}", checked.stdout
    )
    tested = spanvisor("policy", "test", str(tmp_path / "central.toml"), str(tmp_path / "cases.toml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed, 0 failed of acme-security@" in tested.stdout


def test_a_mismatch_fails_with_what_was_expected_and_what_came(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('[[rule]]\nname = "prod"\ncommand = "*prod*"\ndecision = "ask"\n')
    cases = [
        {"name": "prod needs two", "tool": "Bash", "command": "deploy prod", "expect": "ask", "approvers": 2},
        {"tool": "Bash", "command": "ls", "expect": "allow"},
    ]
    (tmp_path / "cases.json").write_text(json.dumps({"case": cases}))
    got = spanvisor("policy", "test", str(tmp_path / "p.toml"), str(tmp_path / "cases.json"))
    assert got.returncode == 1
    assert "FAIL  prod needs two\n      expected: ask 2 people\n      got:      ask 1 person (rule prod)" in got.stdout
    assert "ok    case 2: Bash ls: allow (rule default)" in got.stdout
    assert "1 passed, 1 failed" in got.stdout
    (tmp_path / "bad.json").write_text(json.dumps([{"tool": "Bash", "expect": "maybe"}]))
    bad = spanvisor("policy", "test", str(tmp_path / "p.toml"), str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "case 1: expect must be allow, ask or deny" in bad.stderr


def test_check_names_what_is_wrong_and_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "typo.toml").write_text(
        '[[rule]]\nname = "x"\ndecision = "ask"\napprovers = 2\nfrom = "group:sre"\nto = 1\n'
    )
    got = spanvisor("policy", "check", str(tmp_path / "typo.toml"))
    assert got.returncode == 1 and "unknown key(s) to" in got.stderr
    (tmp_path / "shadow.toml").write_text(
        '[[rule]]\nname = "git"\ncommand = "git *"\ndecision = "ask"\n'
        '[[rule]]\nname = "push"\ncommand = "git push*"\ndecision = "deny"\n'
    )
    got = spanvisor("policy", "check", str(tmp_path / "shadow.toml"))
    assert got.returncode == 1
    assert "✗ rule 'push': shadowed by rule 'git' for each command a shell runs" in got.stdout
    # spanvisor check reads SPANVISOR_POLICY too.
    bad = spanvisor("check", SPANVISOR_POLICY=str(tmp_path / "typo.toml"), SPANVISOR_DATA_DIR=str(tmp_path / "d"))
    assert bad.returncode != 0 and "SPANVISOR_POLICY" in bad.stdout and "unknown key(s) to" in bad.stdout
