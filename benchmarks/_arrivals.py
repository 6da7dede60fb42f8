"""A loopback pass-through in front of ``serve``'s OTLP/HTTP port that notes
when a request naming each marker arrived: what splits a tool call's way to
Slack into the CLI's export delay and serve's part. It forwards every
request as it came (method, path, headers, body) and relays the answer; it
adds well under a millisecond a request on loopback. Requests from
``spanvisor run`` itself (its gate's notes, the task's records: Python's
``urllib``, or their OTLP/JSON scope ``spanvisor.hook`` / ``spanvisor.run``)
are told from the CLI's own (its OTel exporter)."""

from __future__ import annotations

import gzip
import http.client
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = re.compile(rb"tsl[a-z]{2}\d{4}x\d{2}")
# The gate's notes and the launcher's records (OTLP/JSON, sent without urllib since the gate posts them itself).
OUR_SCOPE = re.compile(rb'"scope":\s*\{"name":\s*"spanvisor\.(?:hook|run)"')
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Arrivals:
    def __init__(self, port: int) -> None:
        self.seen: dict[tuple[str, str], list[float]] = {}  # (who, marker) -> wall times of the requests naming it
        lock = threading.Lock()
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _body(self) -> bytes:
                if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = []  # Node's exporters may send chunked bodies
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()

            def _any(self) -> None:
                try:
                    self._forward()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a long poll at the session's end)

            def _forward(self) -> None:
                at = time.time()
                body = self._body()
                plain = body
                if self.headers.get("Content-Encoding", "") == "gzip":
                    try:
                        plain = gzip.decompress(body)
                    except OSError:
                        plain = b""
                ours = "Python-urllib" in self.headers.get("User-Agent", "") or OUR_SCOPE.search(plain) is not None
                who = "launcher" if ours else "cli"
                with lock:
                    for m in MARKER.findall(plain):
                        seen.setdefault((who, m.decode()), []).append(at)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body, headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="arrivals", daemon=True)
        self._thread.start()

    def first(self, who: str, marker: str, after: float) -> float | None:
        """When the first request from ``who`` naming ``marker`` arrived at or after ``after``."""
        return next((t for t in sorted(self.seen.get((who, marker), [])) if t >= after), None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
