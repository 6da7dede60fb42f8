"""The demo's sign-off without the audit trail, with a deciders file of the
user's own, and where its chain check looks.

The end-to-end test (test_demo_end_to_end.py) runs it against PostgreSQL;
these say what the demo does when it cannot verify the chain (one line,
never a traceback) and that ``audit verify`` reads the database the demo
wrote to, even when only a --config file named it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spanvisor.cli.demo_signoff import database_env, people
from spanvisor.config import Config
from spanvisor.control.deciders import load

pytestmark = pytest.mark.slow


def _demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    clean.update(SPANVISOR_DATA_DIR=str(tmp_path), SPANVISOR_CONSOLE_COLOR="never", **env)
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "demo", "--fast"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_without_the_audit_trail_two_people_still_approve_and_the_chain_is_said_unverified(tmp_path: Path) -> None:
    demo = _demo(tmp_path, SPANVISOR_SINKS="console")
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert "spanvisor demo: 4 agents" in out
    # Each person's command is printed with its answer under it, together.
    assert re.search(
        r"👤 alice: SPANVISOR_DECIDE_TOKEN=\$ALICE_TOKEN .+ approve ledger-\w+ a1 --url \S+\n(      .+\n)*"
        r"      Approval 1 of 2 counted: .+ as alice \(verified by your token\); 1 more needed\n",
        out,
    ), out
    assert re.search(
        r"👤 bob: SPANVISOR_DECIDE_TOKEN=\$BOB_TOKEN .+ approve ledger-\w+ a1 --url \S+\n(      .+\n)*"
        r"      Approved: .+ as bob \(verified by your token\)\n",
        out,
    ), out
    assert "✅ [ledger] approved by bob: running migration 0007 (checked where it runs)" in out
    # ledger asked for one approver; the demo's central policy raised it to two.
    assert "(one approver, not dana, who asked)" in out
    assert re.search(r"📜 central policy demo@[0-9a-f]{12}: rule migrations raised it from 1 approver to 2 people", out)
    assert "Policy: required by rule migrations of policy demo@" in out
    assert "a second check of the same approval: refused" in out
    assert "decision log: not verified: no audit trail among these sinks" in out
    assert "audit verify" not in out.split("demo done:")[1]
    assert "Traceback" not in out + demo.stderr
    # The tokens themselves are never shown, only as variables; the file
    # keeps their hashes.
    assert not re.search(r"--token (?!\$)", out), out
    assert len(re.findall(r'token_sha256 = "[0-9a-f]{64}"', (tmp_path / "demo-deciders.toml").read_text())) == 2


def test_a_deciders_file_of_the_users_own_leaves_ledger_out_and_says_so(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('[people.carol]\ntoken_sha256 = "' + "ab" * 32 + '"\n')
    demo = _demo(tmp_path, SPANVISOR_SINKS="console", SPANVISOR_DECIDERS=str(mine))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "spanvisor demo: 3 agents" in demo.stdout
    assert "[ledger] not run: SPANVISOR_DECIDERS is your own file" in demo.stdout
    assert "👤" not in demo.stdout and not (tmp_path / "demo-deciders.toml").exists()


def test_the_demos_people_are_in_its_deciders_file_by_their_tokens(tmp_path: Path) -> None:
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)})
    with_people, signoff = people(config)
    assert signoff.tokens is not None and set(signoff.tokens) == {"alice", "bob"}
    known = load(with_people["deciders_file"])
    assert {n: getattr(known.who(t), "name", None) for n, t in signoff.tokens.items()} == {
        "alice": "alice",
        "bob": "bob",
    }


def test_audit_verify_is_pointed_at_the_database_the_demo_wrote_to(tmp_path: Path) -> None:
    """A --config file's data_dir and database_url reach the subprocess, which
    is given no --config: it would otherwise verify another database."""
    conf = tmp_path / "spanvisor.toml"
    conf.write_text(
        f'[spanvisor]\ndata_dir = "{tmp_path / "d"}"\ndatabase_url = "postgresql://u@db.example:5432/audit"\n'
    )
    config = Config.load(env={}, toml_path=conf).with_values(embedded_db=True)
    env = database_env(config)
    assert env["SPANVISOR_DATA_DIR"] == str(tmp_path / "d")
    assert env["SPANVISOR_DATABASE_URL"] == "postgresql://u@db.example:5432/audit"
    assert env["SPANVISOR_EMBEDDED_DB"] == "true"
    # Read back as spanvisor reads its environment: the same database.
    again = Config.load(env=env)
    assert again.data_dir == config.data_dir and again.get("database_url") == config.get("database_url")
    # Unset in the demo: unset for the subprocess too, whatever this shell has.
    bare = database_env(Config.load(env={"SPANVISOR_DATA_DIR": str(tmp_path)}))
    assert bare["SPANVISOR_DATABASE_URL"] == ""
