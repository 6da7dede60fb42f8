"""A control API whose database restarts answers 503 with Retry-After: the
gate asks again within its deadline instead of denying at once, and one
that cannot be reached at all is said at once (the policy's
``on_unreachable`` decides)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from spanvisor.cli.hook_ask import probe
from spanvisor.control.client import HttpSource
from spanvisor.gate.deadline import Deadline


class Restarting(http.server.ThreadingHTTPServer):
    """503 with Retry-After for the first ``outage`` requests, then 200."""

    def __init__(self, outage: int) -> None:
        self.outage, self.seen = outage, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen += 1
                down = server.seen <= server.outage
                body = (
                    b'{"error": "state store unavailable", "cause": "db"}' if down else b'{"decisions": [], "next": 0}'
                )
                self.send_response(503 if down else 200)
                if down:
                    self.send_header("Retry-After", "0")
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
