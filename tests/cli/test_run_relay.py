"""What a CLI says while the receiver is away is kept (issue 64): the
launcher relays the CLI's telemetry (``launcher/relay.py``).

A fake ``claude`` (the real OTel SDK exporting Claude Code's records)
under the real launcher, with the receiver down when the session starts:

* it comes up while the session runs: the records the CLI exported before
  reach it, once (the model call's tokens counted once), and a cancel then
  stops the session;
* it stays down for the whole session: the records wait in the relay's
  spool and the next launcher aimed at the same endpoint sends them before
  anything of its own; the first session's end (in the hook's spool) follows.

The CLI never held serve's token: only its relay's.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanvisor.cli.main import main
from spanvisor.events import Checkpoint
from tests.cli.coding_harness import TOKEN, Serve, clean_env, fake_claude
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    clean_env(monkeypatch, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def later() -> Iterator[list[Serve]]:
    """The receiver, once a test starts it."""
    started: list[Serve] = []
    yield started
    for s in started:
        s.close()


def _tokens(serve: Serve, task: str) -> list[int]:
    return [
        e.task.input_tokens for e in serve.sink.for_task(task) if isinstance(e, Checkpoint) and e.source == "model_call"
    ]


def _run(port: int, task: str, exe: Path) -> int:
    endpoint = f"http://127.0.0.1:{port}"
    return main(["run", "--task-id", task, "--endpoint", endpoint, "--token", TOKEN, "--", str(exe), "-p", "fix it"])


@pytest.mark.timeout_s(600)
def test_records_the_cli_exported_while_serve_was_down_reach_it_once_it_is_up(
    port: int, later: list[Serve], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_MODE", "hang")
    task = f"claude-code-{uuid.uuid4().hex[:8]}"
    running = Path(f"{record}.running")
    seen: dict[str, object] = {}

    def person() -> None:
        try:
            wait_until(running.exists, 300, "the CLI to export its records and work on")
            later.append(Serve(tmp_path / "serve", port))  # serve comes up only now
            serve = later[0]
            wait_until(lambda: _tokens(serve, task), 120, "the records exported while serve was down")
            seen["cancel"] = serve.cancel(task)
        finally:
            if "cancel" not in seen:
                os.kill(os.getpid(), 15)

    helper = threading.Thread(target=person, daemon=True)
    helper.start()
    _run(port, task, fake_claude(tmp_path))
    helper.join(30)
    assert seen.get("cancel", {}).get("outcome") == "applied", seen  # type: ignore[union-attr]
    serve = later[0]
    done = wait_until(lambda: serve.finished(task), 120, "the task's end")
    assert done.outcome == "cancelled"
    assert done.task.input_tokens == 120, "the model call counted once"
    env = json.loads(record.read_text())["env"]
    assert TOKEN not in json.dumps(env), "serve's token reached the CLI"


@pytest.mark.timeout_s(600)
def test_records_of_a_session_serve_never_saw_go_with_the_next_launcher(
    port: int, later: list[Serve], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("FAKE_MODE", "ok")
    first, second = (f"claude-code-{uuid.uuid4().hex[:8]}" for _ in range(2))
    assert _run(port, first, fake_claude(tmp_path)) == 0
    said = capsys.readouterr().err
    assert "of the CLI's exports wait in" in said, said
    later.append(Serve(tmp_path / "serve", port))
    serve = later[0]
    assert _run(port, second, fake_claude(tmp_path)) == 0
    wait_until(lambda: serve.finished(second), 120, "the second session's end")
    wait_until(lambda: _tokens(serve, first), 120, "the first session's records, sent by the second launcher")
    done = wait_until(lambda: serve.finished(first), 120, "the first session's end, from the hook's spool")
    assert done.outcome == "complete" and done.task.input_tokens == 120
    assert serve.finished(second).task.input_tokens == 120  # type: ignore[union-attr]


class _Upstream:
    """A receiver stand-in that records what reaches it (path, headers, body)."""

    def __init__(self, status: int = 200) -> None:
        import http.server

        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.status = status
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or "0")
                upstream.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(n)))
                self.send_response(upstream.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _raw(url: str, head: str, body: bytes) -> int:
    """One request written by hand (a chunked body, a header as a CLI sends it): its status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode() + body)
        return int(s.recv(4096).split(b" ", 2)[1])


def test_the_relay_forwards_only_its_sessions_exports_as_they_came(tmp_path: Path) -> None:
    """As a CLI sends (Claude Code: ``Bearer%20`` undecoded; Node.js: a
    chunked body; gzip kept as it is), and as another local process would
    try (no token, serve's token, another path, a body past the bound)."""
    from spanvisor.launcher import relay as run_relay

    upstream = _Upstream()
    relay = run_relay.Relay(upstream.url, TOKEN, tmp_path / "spool").start()
    try:

        def post(path: str, auth: str | None, body: bytes, *extra: str, chunked: bool = False) -> int:
            lines = [f"POST {path} HTTP/1.1", "Host: x", "Connection: close", *extra]
            if auth is not None:
                lines.append(f"Authorization: {auth}")
            if chunked:
                lines.append("Transfer-Encoding: chunked")
                payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:3], body[3:])) + b"0\r\n\r\n"
            else:
                lines.append(f"Content-Length: {len(body)}")
                payload = body
            return _raw(relay.url, "\r\n".join(lines) + "\r\n\r\n", payload)

        mine = relay.secret
        assert post("/v1/logs", f"Bearer%20{mine}", b"protobuf", "Content-Type: application/x-protobuf") == 200
        assert post("/v1/traces", f"Bearer {mine}", b'{"resourceSpans":[]}', "Content-Type: application/json",
                    chunked=True) == 200  # fmt: skip
        assert post("/v1/metrics", f"bearer {mine}", b"\x1f\x8b", "Content-Type: application/x-protobuf",
                    "Content-Encoding: gzip") == 200  # fmt: skip
        paths = [(p, h.get("authorization"), h.get("content-encoding"), b) for p, h, b in upstream.got]
        assert paths == [
            ("/v1/logs", f"Bearer {TOKEN}", None, b"protobuf"),
            ("/v1/traces", f"Bearer {TOKEN}", None, b'{"resourceSpans":[]}'),
            ("/v1/metrics", f"Bearer {TOKEN}", "gzip", b"\x1f\x8b"),
        ]
        # Anyone else on the machine: refused, nothing forwarded.
        assert post("/v1/logs", None, b"x", "Content-Type: application/x-protobuf") == 401
        assert post("/v1/logs", f"Bearer {TOKEN}", b"x", "Content-Type: application/x-protobuf") == 401
        assert post("/v1/control/tasks/t/decisions", f"Bearer {mine}", b"{}", "Content-Type: application/json") == 404
        assert post("/v1/logs", f"Bearer {mine}", b"x", "Content-Type: text/plain") == 415
        big = f"Content-Length: {run_relay.MAX_EXPORT_BYTES + 1}"
        assert (
            _raw(relay.url, f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {mine}\r\n{big}\r\n\r\n", b"")
            == 413
        )
        assert len(upstream.got) == 3
    finally:
        assert relay.close(1.0) == 0
        upstream.close()


def test_an_export_the_receiver_refuses_goes_back_and_one_it_cannot_take_is_kept_in_order(tmp_path: Path) -> None:
    from spanvisor.launcher import relay as run_relay

    upstream = _Upstream(status=503)
    relay = run_relay.Relay(upstream.url, TOKEN, tmp_path / "spool").start()
    try:
        for n in range(3):
            body = f"export {n}".encode()
            head = (f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {relay.secret}\r\n"
                    f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
            assert _raw(relay.url, head, body) == 200  # kept: the CLI's exporter is told it went
        assert relay.kept >= 2  # the first went to the 503; the rest queued behind it
        upstream.status = 200
        wait_until(lambda: not relay._kept(), 30, "the kept exports sent")
        bodies = [b for _, _, b in upstream.got if upstream.got and b.startswith(b"export")]
        assert bodies[-3:] == [b"export 0", b"export 1", b"export 2"], bodies
        upstream.status = 400
        body = b"bad"
        head = (f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {relay.secret}\r\n"
                f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        assert _raw(relay.url, head, body) == 400  # the receiver's answer, as it is
    finally:
        relay.close(1.0)
        upstream.close()
