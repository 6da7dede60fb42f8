"""The local serve token (issue 63): ``<data dir>/serve-token``, mode 0600,
the token ``spanvisor serve`` keeps for itself, found by this machine's
clients for a loopback URL only; a remote URL never gets it.

Until serve makes the file itself at its first start, these tests write it
as serve will (``servetoken.make_or_read``) and start serve with that token
configured. Real processes: serve, ``spanvisor approvals``/``cancel``.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.receiver.serve_proc import ServeProcess, console_env

from spanvisor.control.client import HttpSource
from spanvisor.gate import servetoken
from spanvisor.hook import config as hook_config

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServeProcess]:
    data = tmp_path / "serve"
    token, made = servetoken.make_or_read(servetoken.token_path(data))
    assert made
    serve = ServeProcess(data, console_env(data, SPANVISOR_OTLP_TOKEN=token))
    try:
        yield serve
    finally:
        serve.stop()


def _spanvisor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _client_env(data: Path | None, **extra: str) -> dict[str, str]:
    """A user's shell: no token set, the data dir serve uses (or another)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    if data is not None:
        env["SPANVISOR_DATA_DIR"] = str(data)
    env.update(extra)
    return env


def test_the_local_cli_finds_the_token_through_the_data_dir(served: ServeProcess) -> None:
    url = f"http://127.0.0.1:{served.http}"
    token = (served.data_dir / "serve-token").read_text().strip()
    mine = _client_env(served.data_dir)

    listed = _spanvisor(mine, "approvals", "--url", url)
    assert listed.returncode == 0, listed
    # Past the token check: the control API knows no such task.
    cancelled = _spanvisor(mine, "cancel", "rivet-1", "--url", url)
    assert "unknown_task" in cancelled.stdout + cancelled.stderr, cancelled
    assert token not in cancelled.stdout + cancelled.stderr

    # Another data dir (another user's serve, or none): nothing to send.
    other = _client_env(served.data_dir.parent / "elsewhere")
    refused = _spanvisor(other, "cancel", "rivet-1", "--url", url)
    assert "unauthorized" in refused.stdout + refused.stderr, refused
    # localhost is loopback too.
    assert HttpSource(f"http://localhost:{served.http}", env=mine).token == token
    assert HttpSource(f"http://[::1]:{served.http}", env=mine).token == token


def test_the_hook_takes_the_token_for_a_loopback_endpoint_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token, made = servetoken.make_or_read(servetoken.token_path(data))
    assert made
    env = {"SPANVISOR_DATA_DIR": str(data)}

    def settled(**opts: str | None) -> Namespace:
        args = Namespace(**{o: None for o, _ in hook_config.OPTIONS}, locked=False)
        for k, v in opts.items():
            setattr(args, k, v)
        return hook_config.settle(args, env).args

    assert settled(endpoint="http://127.0.0.1:4318").otlp_token == token
    assert settled(endpoint="https://serve.example.com:4318").otlp_token is None
    # Records on loopback but the control API elsewhere: not sent either.
    assert settled(endpoint="http://127.0.0.1:4318", url="https://serve.example.com").otlp_token is None
    # A token given wins, and is the one sent.
    assert settled(endpoint="http://127.0.0.1:4318", otlp_token="given").otlp_token == "given"


def test_a_remote_url_never_gets_the_local_token(tmp_path: Path) -> None:
    """The real CLI through a recording HTTP proxy standing in for the
    network: a remote URL's request carries no local token."""
    data = tmp_path / "data"
    token, _ = servetoken.make_or_read(servetoken.token_path(data))
    env = {"SPANVISOR_DATA_DIR": str(data)}
    seen: list[dict[str, str]] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = json.dumps({"approvals": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        shell = _client_env(data, http_proxy=f"http://127.0.0.1:{proxy.server_port}", no_proxy="")
        got = _spanvisor(shell, "approvals", "--url", "http://serve.example.com:4318")
        assert got.returncode == 0, got
        assert seen and seen[0].get("authorization") is None, seen
        # Passed along explicitly (a variable set from the file), still not sent.
        got = _spanvisor(
            {**shell, "SPANVISOR_OTLP_TOKEN": token}, "approvals", "--url", "http://serve.example.com:4318"
        )
        assert got.returncode == 0, got
        assert len(seen) == 2 and seen[1].get("authorization") is None, seen
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)

    # The clients' one rule, for every sender (control client, gate notes, cancel look, launcher).
    for remote in ("http://serve.example.com:4318", "http://10.0.0.5:4318", "http://127.0.0.1.example.com/"):
        assert servetoken.bearer_for(remote, None, env) is None
        assert servetoken.bearer_for(remote, token, env) is None
        assert servetoken.bearer_for(remote, "a-remote-token", env) == "a-remote-token"
        assert HttpSource(remote, env=env).token is None
    assert servetoken.bearer_for("http://127.0.0.1:4318", None, env) == token
    assert servetoken.bearer_for("http://127.0.0.1:4318", "given", env) == "given"


def test_two_first_starts_agree_on_one_token(tmp_path: Path) -> None:
    path = servetoken.token_path(tmp_path)
    first, made = servetoken.make_or_read(path)
    second, again = servetoken.make_or_read(path)
    assert made and not again and first == second
    assert [p.name for p in tmp_path.iterdir()] == ["serve-token"]  # no temporary file left
