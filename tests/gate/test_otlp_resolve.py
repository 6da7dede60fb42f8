"""The gate's OTLP post looks a name up within its deadline (issue 63's
follow-up): ``socket.getaddrinfo`` has no timeout of its own, so a resolver
that never answered held the post, and with it the system gate's answer at
a session's first call (it keys the session before answering), past the
deadline. And a name with several addresses is tried at each
(``localhost`` may name ::1 first while the receiver listens on 127.0.0.1).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from spanvisor.gate import otlp


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _text(host: str | bytes) -> str:
    """A host as the gate hands it to the socket module: an ASCII one as bytes (gate.otlp.host_arg)."""
    return host.decode() if isinstance(host, bytes) else host


@pytest.fixture
def receiver() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_resolver_that_never_answers_costs_the_post_its_deadline_not_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup blocks until the test lets it go (or for 30 s): each post
    must have answered while its lookup still blocked. A post that waited
    for the lookup returns only after it ended (30 s later, and fails)."""
    release = threading.Event()
    asked: list[str] = []
    ended: list[str] = []

    def never(host: str | bytes, *args: Any, **kw: Any) -> Any:
        host = _text(host)
        asked.append(host)
        release.wait(30)
        ended.append(host)
        raise socket.gaierror("the resolver did not answer")

    monkeypatch.setattr(socket, "getaddrinfo", never)
    try:
        assert otlp.post("http://spanvisor.invalid:4318", None, b"{}", 0.2) is False
        assert otlp.post("https://spanvisor.invalid:4318", None, b"{}", 0.2) is False
        assert asked == ["spanvisor.invalid"]  # the second waits on the lookup still running: one thread
        assert not ended, "a post waited for a lookup that did not answer"
    finally:
        release.set()
        for t in threading.enumerate():
            if t.name == "spanvisor-resolve":
                t.join(10)


def test_a_literal_address_is_not_looked_up(monkeypatch: pytest.MonkeyPatch, receiver: int) -> None:
    assert otlp.post(f"http://127.0.0.1:{receiver}", None, b"{}", 10.0) is True

    def refuse(*args: Any, **kw: Any) -> Any:
        raise AssertionError("a literal address was looked up")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert otlp.addresses("127.0.0.1", receiver, 1.0) == ["127.0.0.1"]
    assert otlp.addresses("::1", receiver, 1.0) == ["::1"]


def test_a_name_is_tried_at_each_of_its_addresses(monkeypatch: pytest.MonkeyPatch, receiver: int) -> None:
    """The name's first address takes no connection (::1, where nothing
    listens on the receiver's port), its second does."""
    real = socket.getaddrinfo

    def both(host: str | bytes, port: Any, *args: Any, **kw: Any) -> Any:
        if _text(host) != "receiver.test":
            return real(host, port, *args, **kw)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", both)
    assert otlp.addresses("receiver.test", receiver, 5.0) == ["::1", "127.0.0.1"]
    assert otlp.post(f"http://receiver.test:{receiver}", None, b"{}", 10.0) is True


def test_an_https_endpoint_behind_the_environments_proxy_is_reached_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The https post speaks TLS over a connection of its own (bounded
    lookup), except where ``HTTPS_PROXY`` sends the host through a proxy,
    as urllib did before: then urllib's way, through the proxy (a CONNECT),
    unless ``NO_PROXY`` names the host."""
    proxy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(4)
    heard: list[bytes] = []

    def serve() -> None:
        conn, _ = proxy.accept()
        with conn:
            heard.append(conn.recv(4096).split(b"\r\n", 1)[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    import urllib.request

    # A process that used urlopen before (other tests in this worker, the
    # launcher's other posts) holds an opener that read no proxy then.
    monkeypatch.setattr(urllib.request, "_opener", urllib.request.build_opener(urllib.request.ProxyHandler({})))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    try:
        assert otlp.post("https://receiver.invalid:4318", None, b"{}", 5.0) is False
        thread.join(10)
        assert heard == [b"CONNECT receiver.invalid:4318 HTTP/1.0"], heard
        monkeypatch.setenv("NO_PROXY", "receiver.invalid")
        assert otlp.post("https://receiver.invalid:4318", None, b"{}", 1.0) is False
        assert heard == [b"CONNECT receiver.invalid:4318 HTTP/1.0"], "NO_PROXY was sent through the proxy"
    finally:
        if thread.is_alive():  # nothing came: wake its accept
            socket.create_connection(proxy.getsockname(), timeout=5).close()
        thread.join(10)
        proxy.close()
        for t in threading.enumerate():
            if t.name == "spanvisor-resolve":
                t.join(10)
