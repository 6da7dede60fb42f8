"""The real ``spanvisor hook`` under injected faults, each answered in the
CLI's contract before the CLI's deadline: a control API that answers 500,
one that is slow, PostgreSQL down behind ``serve`` while a person is being
waited for (waited out, then the person's approval is honoured), SIGTERM
while waiting for a person, and stdin over 4 MiB."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanvisor.clis import registry
from tests.cli.coding_harness import TOKEN, Serve, clean_env, task_of
from tests.gate.test_attack import SPANVISOR, assert_block, decision, env_for, run_hook
from tests.receiver.serve_proc import ServeProcess, console_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(900)]
CLI_TIMEOUT_S = 4.0


class Faulty(http.server.ThreadingHTTPServer):
    """A control API and receiver that answers every request with
    ``status`` after ``delay_s`` seconds."""

    def __init__(self, status: int, delay_s: float = 0.0) -> None:
        self.status, self.delay_s, self.seen = status, delay_s, 0
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                server.seen += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.stopping.wait(server.delay_s)
                body = b'{"error": "boom"}'
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.thread.join(10)


@pytest.mark.parametrize(("status", "delay_s"), [(500, 0.0), (502, 0.0), (200, 3.0), (500, 30.0)])
@pytest.mark.parametrize("cli", registry.NAMES)
def test_a_failing_or_slow_control_api_is_a_deny_before_the_clis_timeout(
    tmp_path: Path, cli: str, status: int, delay_s: float
) -> None:
    api = Faulty(status, delay_s)
    try:
        args = ("--cli-timeout", f"{CLI_TIMEOUT_S:g}", "--url", api.url, "--endpoint", api.url)
        stdin = json.dumps({"session_id": "s1", "tool_name": "Bash", "tool_input": {"command": "make"}}).encode()
        t0 = time.monotonic()
        code, out, err = run_hook(tmp_path, cli, stdin, 'default = "ask"\n', *args)
        took = time.monotonic() - t0
    finally:
        api.close()
    assert api.seen >= 1, "the hook asked"
    assert took < CLI_TIMEOUT_S, f"answered after {took:.2f} s"
    assert_block(cli, code, out, err, failure=False)


def test_stdin_over_4_mib_is_a_block(tmp_path: Path) -> None:
    stdin = json.dumps({"session_id": "s", "tool_name": "Bash", "tool_input": {"command": "ls " + "x" * 4_200_000}})
    code, out, err = run_hook(tmp_path, "claude-code", stdin.encode(), 'default = "allow"\n')
    assert_block("claude-code", code, out, err)
    assert "over 4194304 bytes" in err


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    clean_env(monkeypatch, tmp_path)
    s = Serve(tmp_path / "serve")
    yield s
    s.close()


def _asking(
    tmp_path: Path, base: str, session: str, command: str, call_id: str | None = None
) -> subprocess.Popen[bytes]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "ask.toml").write_text('default = "ask"\ntimeout = 240\n')
    env = {**env_for(tmp_path), "SPANVISOR_OTLP_ENDPOINT": base, "SPANVISOR_OTLP_TOKEN": TOKEN}
    call: dict[str, Any] = {"session_id": session, "tool_name": "Bash", "tool_input": {"command": command}}
    if call_id is not None:
        call["tool_use_id"] = call_id
    stdin = json.dumps(call)
    argv = [SPANVISOR, "hook", "claude-code", "--policy", str(tmp_path / "ask.toml"), "--cli-timeout", "300"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    proc.stdin.write(stdin.encode())
    proc.stdin.close()
    proc.stdin = None
    return proc


def _open_requests(base: str, task: str) -> list[dict[str, Any]]:
    import urllib.request

    req = urllib.request.Request(f"{base}/v1/control/tasks/{task}", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return list(json.loads(resp.read()).get("approvals") or [])
    except OSError:
        return []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_while_waiting_for_a_person_is_a_block(serve: Serve, tmp_path: Path, sig: signal.Signals) -> None:
    session = f"sig-{uuid.uuid4().hex[:8]}"
    proc = _asking(tmp_path, serve.base, session, "make deploy")
    try:
        wait_until(lambda: _open_requests(serve.base, task_of("claude-code", session)), 240, "the request for a person")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert_block("claude-code", proc.returncode, out.decode(), err.decode())
    assert sig.name in err.decode()


def test_postgresql_down_behind_serve_while_a_person_is_asked_is_waited_out(own_pg_server: Any, tmp_path: Path) -> None:
    """serve answers 503 with Retry-After while its database is down: the
    hook neither denies nor gives up; once the database is back, the
    person's approval is honoured and checked where it runs."""
    url = own_pg_server.url()
    env = console_env(tmp_path / "serve", SPANVISOR_OTLP_TOKEN=TOKEN, SPANVISOR_SHUTDOWN_TIMEOUT="10s")
    env |= {
        "SPANVISOR_SINKS": "postgres",
        "SPANVISOR_STATE_STORE": "postgres",
        "SPANVISOR_DATABASE_URL": url,
        "SPANVISOR_EMBEDDED_DB": "false",
    }
    serve = ServeProcess(tmp_path / "serve", env)
    base = f"http://127.0.0.1:{serve.http}"
    session = f"pg-{uuid.uuid4().hex[:8]}"
    proc = _asking(tmp_path, base, session, "make release")
    try:
        [req] = wait_until(
            lambda: _open_requests(base, task_of("claude-code", session)), 240, "the request for a person"
        )
        own_pg_server.stop()
        time.sleep(4)  # the hook polls through the outage: 503s, never a denial
        assert proc.poll() is None, "the hook gave up during the outage"
        own_pg_server.start()
        own_pg_server.wait_ready()
        cli_env = {k: v for k, v in env.items() if k != "SPANVISOR_OTLP_TOKEN"}
        approve = [
            sys.executable,
            "-m",
            "spanvisor.cli",
            "approve",
            task_of("claude-code", session),
            req["approval_id"],
        ]
        approve += ["--url", base, "--token", TOKEN, "--as", "carol"]

        def approved() -> bool:
            ran = subprocess.run(approve, env=cli_env, capture_output=True, text=True, timeout=60, check=False)
            return ran.returncode == 0

        wait_until(approved, 120, "the approval recorded once the database is back", every=0.5)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
        serve.stop()
    assert (proc.returncode, decision("claude-code", out.decode())) == (0, "allow"), err.decode()
    assert "approved by carol" in out.decode()


def test_an_approval_lets_through_exactly_the_call_that_asked(serve: Serve, tmp_path: Path) -> None:
    """Two hook processes with the same tool-call id (one request) and
    different commands: the person's one approval lets exactly the one
    whose action it was given for run; the other is denied at the check
    where it runs (another key, another action)."""
    session = f"one-{uuid.uuid4().hex[:8]}"
    first = _asking(tmp_path / "a", serve.base, session, "echo approved", "toolu_same")
    [req] = wait_until(
        lambda: _open_requests(serve.base, task_of("claude-code", session)), 240, "the request for a person"
    )
    second = _asking(tmp_path / "b", serve.base, session, "rm -rf ~/prod", "toolu_same")
    try:
        time.sleep(1)  # the second asks too (the same request id)
        approve = [
            sys.executable,
            "-m",
            "spanvisor.cli",
            "approve",
            task_of("claude-code", session),
            req["approval_id"],
        ]
        approve += ["--url", serve.base, "--token", TOKEN, "--as", "carol"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
        assert subprocess.run(approve, env=env, capture_output=True, timeout=60, check=False).returncode == 0
        said = {}
        for name, proc in (("first", first), ("second", second)):
            out, err = proc.communicate(timeout=240)
            said[name] = (proc.returncode, decision("claude-code", out.decode()), err.decode())
    finally:
        first.kill()
        second.kill()
    assert said["first"][:2] == (0, "allow"), said
    assert said["second"][:2] == (0, "deny"), said
