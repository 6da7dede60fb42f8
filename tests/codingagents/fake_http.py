"""A fake model API on loopback: each CLI run talks to its own base URL
(``/s/<run>``), so runs never share a conversation; every request is kept
for the test to read, and a path the fake does not serve is answered 404
(as the real API answers an unknown path) and listed in ``unexpected``."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.codingagents.script import Script


@dataclass(frozen=True)
class Seen:
    run: str
    method: str
    path: str  # without the run's prefix, with the query
    body: Any  # the JSON body, or the raw text


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    hold_s: float = 0.0  # sent only after this long (the fake closing ends the wait)


def held(reply: Reply, seconds: float) -> Reply:
    return replace(reply, hold_s=seconds) if seconds > 0 else reply


def sse(events: list[tuple[str | None, dict[str, Any]]]) -> Reply:
    """Server-sent events, each ``event:`` (when named) and one ``data:`` line."""
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {json.dumps(data)}\n\n")
    return Reply(200, "text/event-stream", "".join(out).encode())


def as_json(status: int, doc: Any) -> Reply:
    return Reply(status, "application/json", json.dumps(doc).encode())


Answer = Callable[[Script, Seen], Reply | None]


@dataclass
class FakeModelAPI:
    """Serves ``answer`` on 127.0.0.1 (any free port) until :meth:`close`."""

    answer: Answer
    scripts: dict[str, Script] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the requests are kept in fake.seen

            def _any(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = self._chunked()
                else:
                    n = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(n) if n else b""
                reply = fake._handle(self.command, self.path, raw)
                if reply.hold_s > 0 and not self._held(reply.hold_s):
                    return  # the CLI went away while it waited: nobody to answer
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the CLI went away meanwhile (stopped while it waited)

            def _chunked(self) -> bytes:
                """A body sent in chunks (Node's clients may send one so)."""
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()

            def _held(self, seconds: float) -> bool:
                """Wait ``seconds`` (less when the fake closes); False when the
                client closed its connection meanwhile."""
                end = time.monotonic() + seconds
                while not fake._closing.wait(min(0.1, max(0.0, end - time.monotonic()))):
                    if time.monotonic() >= end:
                        return True
                    ready, _, _ = select.select([self.connection], [], [], 0)
                    try:
                        if ready and not self.connection.recv(1, socket.MSG_PEEK):
                            return False
                    except OSError:
                        return False
                return True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-model-api", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def base_url(self, run: str, suffix: str = "") -> str:
        """The base URL a run's CLI is given (its script under ``run``)."""
        return f"http://127.0.0.1:{self.port}/s/{run}{suffix}"

    def script(self, run: str, script: Script) -> str:
        with self._lock:
            self.scripts[run] = script
        return run

    def requests(self, run: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.run == run]

    def _handle(self, method: str, path: str, raw: bytes) -> Reply:
        run, rest = "", path
        if path.startswith("/s/"):
            run, _, tail = path[3:].partition("/")
            rest = "/" + tail
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        seen = Seen(run, method, rest, body)
        with self._lock:
            self.seen.append(seen)
            script = self.scripts.get(run)
        reply = self.answer(script, seen) if script is not None else None
        if reply is None:
            with self._lock:
                self.unexpected.append(f"{method} {path}")
            return as_json(404, {"error": {"code": 404, "message": f"no such path: {rest}", "status": "NOT_FOUND"}})
        return reply

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
