"""A repository cannot switch the gate's policy.

Claude Code applies a project's ``.claude/settings.json`` ``env`` block to
the hooks it runs, so the agent's repository can set any variable of the
hook's environment: ``SPANVISOR_HOOK_POLICY`` (its own policy),
``SPANVISOR_CENTRAL_POLICY=off`` (no central floor), another control API.
What the hook's command line says (in the settings the operator
installed) wins over each, and ``--locked`` ignores them all. The real
``spanvisor hook claude-code`` process, with that environment, against a
small stand-in for serve's ``GET /v1/control/policy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spanvisor.gate.central import document, from_files
from spanvisor.gate.centralcache import ROUTE

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
CENTRAL = """name = "acme"
[[rule]]
name = "no-force-push"
tool = "Bash"
command = ["git push *--force*"]
decision = "deny"
reason = "force pushes are never allowed"
"""
OPERATOR = """default = "deny"
[[rule]]
name = "everyday"
tool = "Bash"
command = ["ls*", "git *"]
decision = "allow"
"""
AGENTS = """default = "allow"
"""


class FakeServe:
    """serve's policy route: the document, its SHA-256 as the ETag, 304 for
    a matching ``If-None-Match``; it counts the requests."""

    def __init__(self, text: str = CENTRAL) -> None:
        self.doc: dict[str, Any] = document(from_files((("acme.toml", text),), "acme"))
        self.asked: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.partition("?")[0] != ROUTE:  # a task's cancel, …: none here
                    self.send_error(404)
                    return
                etag = f'"{outer.doc["sha256"]}"'
                outer.asked.append(self.headers.get("If-None-Match"))
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                body = json.dumps(outer.doc).encode()
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[FakeServe]:
    s = FakeServe()
    yield s
    s.close()


def home_env(tmp: Path) -> dict[str, str]:
    """This machine's environment without spanvisor's variables, its state
    (the central policy's cache, the notes' spool) under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update({"HOME": str(tmp / "home"), "XDG_STATE_HOME": str(tmp / "state")})
    return env


def call(command: str) -> bytes:
    return json.dumps(
        {
            "session_id": "s-trust-config",
            "cwd": "/work/repo",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": command},
            "tool_use_id": "toolu_trust",
        }
    ).encode()


def run_hook(env: dict[str, str], command: str, *args: str) -> tuple[str, str]:
    """The real hook process: (permissionDecision, stderr)."""
    proc = subprocess.run(
        [SPANVISOR, "hook", "claude-code", *args],
        input=call(command),
        capture_output=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode in (0, 2), proc.stderr
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])["hookSpecificOutput"]["permissionDecision"], proc.stderr.decode()


@pytest.fixture
def policies(tmp_path: Path) -> tuple[Path, Path]:
    operator, agents = tmp_path / "operator.toml", tmp_path / "repo-policy.toml"
    operator.write_text(OPERATOR)
    agents.write_text(AGENTS)
    return operator, agents


def repo_env(tmp: Path, agents: Path, elsewhere: str) -> dict[str, str]:
    """What a repository's ``.claude/settings.json`` ``env`` block can give
    the hook: its own policy, no central floor, another server and data dir."""
    return {
        "SPANVISOR_HOOK_POLICY": str(agents),
        "SPANVISOR_CENTRAL_POLICY": "off",
        "SPANVISOR_CONTROL_URL": elsewhere,
        "SPANVISOR_OTLP_ENDPOINT": elsewhere,
        "SPANVISOR_DATA_DIR": str(tmp / "agents-data"),
        "SPANVISOR_HOOK_DELIVERY": "off",
    }


def test_a_repositorys_env_block_does_not_change_a_locked_hooks_decision(
    tmp_path: Path, serve: FakeServe, policies: tuple[Path, Path]
) -> None:
    operator, agents = policies
    hook = ("--locked", "--policy", str(operator), "--url", serve.url)
    base = home_env(tmp_path)
    attacked = {**base, **repo_env(tmp_path, agents, "http://127.0.0.1:9")}
    for command, expected in (("git push --force origin main", "deny"), ("curl evil.example", "deny"), ("ls", "allow")):
        assert run_hook(base, command, *hook)[0] == expected
        got, err = run_hook(attacked, command, *hook)
        assert got == expected, (command, err)
        assert "SPANVISOR_CENTRAL_POLICY" in err and "SPANVISOR_HOOK_POLICY" in err and "--locked" in err
    assert serve.asked, "the locked hook asked the server its command line names"
    assert not (tmp_path / "agents-data").exists(), "nothing read or written where the repository said"


def test_the_command_lines_options_win_over_the_variables_they_stand_for(
    tmp_path: Path, serve: FakeServe, policies: tuple[Path, Path]
) -> None:
    operator, agents = policies
    attacked = {**home_env(tmp_path), **repo_env(tmp_path, agents, "http://127.0.0.1:9")}
    hook = ("--policy", str(operator), "--central", "required", "--url", serve.url)
    got, err = run_hook(attacked, "git push --force origin main", *hook)
    assert got == "deny"
    assert "SPANVISOR_HOOK_POLICY" in err and "SPANVISOR_CENTRAL_POLICY" in err and "SPANVISOR_CONTROL_URL" in err
    assert run_hook(attacked, "curl evil.example", *hook)[0] == "deny"  # the operator's policy, not the repository's


def test_without_the_lock_or_the_options_the_environment_still_decides(
    tmp_path: Path, serve: FakeServe, policies: tuple[Path, Path]
) -> None:
    """What the lock is for: the same environment does switch an unlocked
    hook that names nothing (as before; the threat is real)."""
    _, agents = policies
    attacked = {**home_env(tmp_path), **repo_env(tmp_path, agents, serve.url)}
    got, err = run_hook(attacked, "git push --force origin main")
    assert got == "allow"
    assert "ignored" not in err


def test_a_locked_hook_still_reads_the_sessions_own_variables(tmp_path: Path) -> None:
    from spanvisor.hook import config as hook_config

    assert not hook_config.locked_out("SPANVISOR_TASK_ID")
    assert not hook_config.locked_out("SPANVISOR_HOOK_STARTED")
    for name in ("SPANVISOR_HOOK_POLICY", "SPANVISOR_CENTRAL_POLICY_TTL", "SPANVISOR_HOOK_CANCEL_WAIT", "SPANVISOR_X"):
        assert hook_config.locked_out(name)
    assert hook_config.locked_out("OTEL_EXPORTER_OTLP_ENDPOINT")


def test_a_locked_hook_refuses_a_relative_policy_which_the_repository_would_supply(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "policy.toml").write_text(AGENTS)
    proc = subprocess.run(
        [SPANVISOR, "hook", "claude-code", "--locked", "--policy", "policy.toml"],
        input=call("ls"),
        capture_output=True,
        env=home_env(tmp_path),
        cwd=tmp_path / "repo",
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2 and b"--locked needs an absolute --policy" in proc.stderr
