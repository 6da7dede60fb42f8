"""Secrets off command lines and out of the agent's environment.

``/proc/<pid>/cmdline`` is readable by every local user, so the CLI that
``spanvisor run`` starts carries no secret in its arguments: not Codex's
OTLP token, not the URL (with its secret path) of the launcher's ``http``
gate for Claude Code; and a person's approving token
(``SPANVISOR_DECIDE_TOKEN``) is never in the CLI's environment. And the
``http`` gate's listener holds no thread for a connection that sends half
a request: it closes it after its read timeout, and serves a bounded
number at once.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.clis import registry
from spanvisor.launcher import gate_http as run_gate_http
from spanvisor.launcher.gate_http import HttpGate
from spanvisor.launcher.gate_threads import WORKERS
from tests.waiting import wait_until

OTLP_TOKEN = "otlp-s3cret-token"
DECIDE_TOKEN = "decide-s3cret-token"
# A CLI that says where it is and waits until the test has looked at it.
FAKE = """#!/bin/sh
echo $$ > "$FAKE_PID"
i=0
while [ ! -e "$FAKE_GO" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
"""


class Launched:
    """``spanvisor run -- <fake cli> …`` started; the fake CLI's pid once it runs."""

    def __init__(self, tmp: Path, name: str, args: list[str], extra: dict[str, str]) -> None:
        fake = tmp / "bin" / name  # the launcher knows the CLI by its name
        fake.parent.mkdir(exist_ok=True)
        fake.write_text(FAKE)
        fake.chmod(0o755)
        self.pid_file, self.go = tmp / f"{name}.pid", tmp / f"{name}.go"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
        env |= {"HOME": str(tmp), "XDG_STATE_HOME": str(tmp / "state"), "SPANVISOR_DATA_DIR": str(tmp / "data")}
        env |= {"FAKE_PID": str(self.pid_file), "FAKE_GO": str(self.go), "SPANVISOR_HOOK_DELIVERY": "off"}
        env |= {"SPANVISOR_OTLP_TOKEN": OTLP_TOKEN, "SPANVISOR_DECIDE_TOKEN": DECIDE_TOKEN, **extra}
        launcher = [sys.executable, "-m", "spanvisor.cli", "run", "--endpoint", "http://127.0.0.1:9", "--task-id", name]
        self.proc = subprocess.Popen(
            [*launcher, "--", str(fake), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.pid = int(wait_until(self._pid, 60, "the fake CLI to start"))

    def _pid(self) -> int | None:
        text = self.pid_file.read_text().strip() if self.pid_file.exists() else ""
        return int(text) if text else None

    def cmdline(self) -> list[str]:
        return Path(f"/proc/{self.pid}/cmdline").read_bytes().decode().split("\0")

    def environ(self) -> dict[str, str]:
        raw = Path(f"/proc/{self.pid}/environ").read_bytes().decode(errors="replace")
        return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)

    def finish(self) -> None:
        self.go.touch()
        try:
            self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def test_codex_started_by_the_launcher_has_no_token_on_its_command_line(tmp_path: Path) -> None:
    run = Launched(tmp_path, "codex", ["exec", "fix it"], {})
    try:
        argv = run.cmdline()
        assert any(a.startswith("otel.exporter=") for a in argv), argv  # its telemetry is still set
        assert not any(OTLP_TOKEN in a for a in argv), argv
        env = run.environ()
        # Its telemetry goes through the launcher's relay, with the relay's own token, not serve's
        # (a SPANVISOR_OTLP_TOKEN of the user's own environment still passes on, for the CLI's hooks).
        assert env["OTEL_EXPORTER_OTLP_HEADERS"].startswith("authorization=Bearer%20")
        assert OTLP_TOKEN not in env["OTEL_EXPORTER_OTLP_HEADERS"]
        assert "SPANVISOR_DECIDE_TOKEN" not in env and not any(DECIDE_TOKEN in v for v in env.values())
    finally:
        run.finish()


def test_claude_codes_http_gate_is_given_in_a_private_file_not_on_its_command_line(tmp_path: Path) -> None:
    run = Launched(tmp_path, "claude", ["-p", "hi"], {"SPANVISOR_LOCAL_GATE": "http"})
    try:
        argv = run.cmdline()
        assert not any("/hook/" in a for a in argv), argv
        path = Path(argv[argv.index("--settings") + 1])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        [entry] = [
            h for g in json.loads(path.read_text())["hooks"]["PreToolUse"] for h in g["hooks"] if h["type"] == "http"
        ]
        assert "/hook/" in entry["url"] and entry["onFailure"] == "block"
        assert "SPANVISOR_DECIDE_TOKEN" not in run.environ()
    finally:
        run.finish()


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HttpGate]:
    monkeypatch.setattr(run_gate_http, "READ_S", 0.5)
    monkeypatch.setattr(run_gate_http, "IDLE_S", 0.5)

    def decide(send: object, *_: object) -> None:
        send(0, '{"hookSpecificOutput": {"permissionDecision": "allow"}}', "")  # type: ignore[operator]

    http = HttpGate(registry.need("claude-code"), decide, {}, str(tmp_path))
    yield http
    http.close()


def closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or a reset); not blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_half_sent_requests_are_closed_after_the_read_timeout_and_threads_stay_bounded(listener: HttpGate) -> None:
    port = listener.server.server_address[1]
    before = threading.active_count()
    socks = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /hook/x HTTP/1.1\r\nHost: x\r\nContent-Len")
        socks.append(s)
    peaks = [before]

    def all_closed() -> bool | None:
        peaks.append(threading.active_count())  # while they hang: never a thread per connection
        return all(closed(s) for s in socks) or None

    try:
        wait_until(all_closed, 60, "every half-sent connection closed")
        # (a few for any other test's thread that may start meanwhile)
        assert max(peaks) <= before + run_gate_http.MAX_CONNECTIONS + 4, max(peaks)
        # Their workers back to waiting (the gate keeps them for its next
        # calls, gate_threads.py), none still held by a connection.
        wait_until(lambda: threading.active_count() - WORKERS.waiting <= before + 4 or None, 60, "their threads free")
    finally:
        for s in socks:
            s.close()
    # And the listener still answers a whole request.
    body = b"{}"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        path = listener.url.split(f":{port}", 1)[1]
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")


def test_an_idle_kept_alive_connection_is_closed(listener: HttpGate) -> None:
    port = listener.server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        wait_until(lambda: closed(s) or None, 60, "the idle connection closed")
