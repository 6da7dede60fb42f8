"""A control API whose database restarts answers 503 with Retry-After: the
gate asks again within its deadline instead of denying at once (the read
of the task, the wait, and the check of a person's approval where it runs,
which a 503 used to turn into a denial), after the server's Retry-After;
a read that times out (a server too busy to answer in time: PostgreSQL
down under 200 asked calls) is asked again the same way, where it used to
be a denial without asking anyone; and one that cannot be reached at all
is said at once (the policy's ``on_unreachable`` decides)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from spanvisor.control.client import HttpSource
from spanvisor.gate.deadline import Deadline
from spanvisor.hook.ask import check, probe


class Restarting(http.server.ThreadingHTTPServer):
    """503 with Retry-After for the first ``outage`` requests, then 200
    (a permit POST: permitted)."""

    def __init__(self, outage: int, retry_after: str = "0") -> None:
        self.outage, self.seen, self.retry_after = outage, 0, retry_after
        self.times: list[float] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.answer(b'{"permitted": true, "reason": "approved"}')

            def do_GET(self) -> None:
                self.answer(b'{"decisions": [], "next": 0}')

            def answer(self, ok: bytes) -> None:
                server.seen += 1
                server.times.append(time.monotonic())
                down = server.seen <= server.outage
                body = b'{"error": "state store unavailable", "cause": "db"}' if down else ok
                self.send_response(503 if down else 200)
                if down:
                    self.send_header("Retry-After", server.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def restarting() -> Iterator[Restarting]:
    server = Restarting(outage=3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_503_is_asked_again_until_the_api_is_back(restarting: Restarting) -> None:
    client = HttpSource(f"http://127.0.0.1:{restarting.server_address[1]}", None, request_timeout_s=5)
    assert probe(client, "t", Deadline(time.monotonic() + 60, 60)) == 200
    assert restarting.seen == 4


def test_a_503_past_the_deadline_is_answered_as_it_stands(restarting: Restarting) -> None:
    client = HttpSource(f"http://127.0.0.1:{restarting.server_address[1]}", None, request_timeout_s=5)
    assert probe(client, "t", Deadline(time.monotonic(), 60)) == 503


def test_an_api_that_cannot_be_reached_is_said_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = HttpSource(f"http://127.0.0.1:{port}", None, request_timeout_s=5)
    assert probe(client, "t", Deadline(time.monotonic() + 60, 60)) == 0


def test_the_check_of_an_approval_waits_out_a_503_after_its_retry_after() -> None:
    server = Restarting(outage=2, retry_after="1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = HttpSource(f"http://127.0.0.1:{server.server_address[1]}", None, request_timeout_s=5)
        action = {"tool": "Bash", "arguments": {"command": "make"}}
        permit = check(client, "t", "a1", action, None, "k", Deadline(time.monotonic() + 60, 60))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert permit.permitted, permit
    assert server.seen == 3
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps  # the server's Retry-After: 1, not sooner


def test_a_503_with_a_retry_after_past_the_deadline_is_a_refusal_in_time() -> None:
    server = Restarting(outage=100, retry_after="30")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = HttpSource(f"http://127.0.0.1:{server.server_address[1]}", None, request_timeout_s=5)
        t0 = time.monotonic()
        permit = check(client, "t", "a1", {"tool": "x", "arguments": {}}, None, "k", Deadline(t0 + 5, 60))
        took = time.monotonic() - t0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert not permit.permitted and "503" in permit.reason
    assert took < 5, "no wait past the deadline"


class Slow(http.server.ThreadingHTTPServer):
    """Holds the first ``held`` requests past the client's timeout, then answers 200."""

    def __init__(self, held: int, hold_s: float) -> None:
        self.held, self.hold_s, self.seen = held, hold_s, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen += 1
                if server.seen <= server.held:
                    time.sleep(server.hold_s)
                body = b'{"decisions": [], "next": 0}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a held answer: what this server is for

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_read_that_times_out_is_asked_again_within_the_deadline() -> None:
    server = Slow(held=2, hold_s=1.5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = HttpSource(f"http://127.0.0.1:{server.server_address[1]}", None, request_timeout_s=0.5)
        assert probe(client, "t", Deadline(time.monotonic() + 60, 60)) == 200
        assert server.seen == 3, "two reads timed out, the third was answered"
        # Past the deadline it stands as it is: no answer (status 0), the policy decides.
        t0 = time.monotonic()
        server.held, server.seen = 100, 0
        assert probe(client, "t", Deadline(t0 + 2, 60)) == 0
        assert time.monotonic() - t0 < 4
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
