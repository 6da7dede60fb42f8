"""Malformed HTTP on serve's ports is counted and logged once per interval,
never a traceback per request, and never with the request's bytes.

aiohttp answers a request line it cannot parse with 400 itself; before, it
logged each one at ERROR with a 9-line traceback. A real receiver on
loopback: 100 malformed requests on the OTLP/HTTP port and on the admin
port, a well-formed export in between.
"""

from __future__ import annotations

import logging
import socket

import pytest
from agent_traces import request_for, task_spans
from serve_proc import post

from conftest import RunningReceiver, requests

SECRET = "sk-do-not-log-me"
BAD = (
    f"GARBAGE {SECRET}\r\n\r\n".encode(),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on a plain port
    f"POST /v1/traces HTTP/1.1\r\nAuthorization Bearer {SECRET}\r\n\r\n".encode(),  # no colon
)


def _send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(4096):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_malformed_requests_are_one_line_per_interval(
    receiver: RunningReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    ports = {"http": receiver.receiver.http_port, "admin": receiver.receiver.admin_port}
    for i in range(100):
        for port in ports.values():
            assert port is not None
            answer = _send_raw(port, BAD[i % len(BAD)])
            assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")) or answer == b"", answer[:80]
        if i == 50:
            # Well-formed requests are served as ever in between.
            assert post(receiver.http_url, request_for(task_spans(1, seed=71)).SerializeToString())
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    text = "\n".join(r.getMessage() for r in records)
    assert not any(r.exc_info for r in caplog.records), text
    assert "Traceback" not in caplog.text
    assert SECRET not in caplog.text
    malformed = [r for r in records if "malformed HTTP" in r.getMessage()]
    # At most the first one of each port within the interval.
    assert 1 <= len(malformed) <= 2 * len(ports), text
    assert len(records) <= 2 * len(ports) + 5, text
    assert requests(receiver.pipeline, "http", "malformed") == 100
    assert requests(receiver.pipeline, "admin", "malformed") == 100
    assert requests(receiver.pipeline, "http", "ok") == 1


def test_the_count_is_logged_at_the_end_of_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from aiohttp.http_exceptions import BadStatusLine

    from spanvisor.receiver.httplog import MalformedRequests

    async def main() -> None:
        counter = MalformedRequests("OTLP/HTTP", interval_s=0.05)
        for _ in range(10):
            counter.note(BadStatusLine(f"GARBAGE {SECRET}"))
        await asyncio.sleep(0.3)
        counter.close()

    with caplog.at_level(logging.WARNING, logger="spanvisor.receiver"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "9 malformed HTTP requests on the OTLP/HTTP port in the last 0.05 s; last: BadStatusLine" in lines[1]
    assert SECRET not in caplog.text
