"""The CLI's telemetry through the launcher (issue 64): what a CLI says
while the receiver is away is kept, not lost.

``spanvisor run`` points the CLI's OTLP/HTTP exporters at a relay on
loopback in its own process. Each export is forwarded as it came (its
path, content type and encoding) to the session's endpoint, with the
session's token: the CLI never holds that token, only the relay's own,
good for this session alone (another local process that finds the port
gets ``401``).

An export the receiver does not take now (unreachable, a 5xx, a 429) is
kept in the relay's spool, in order, and answered ``200`` at once: the
CLI's exporter, which would retry a few times and then drop it, never sees
the outage. The relay sends what it keeps, oldest first, as soon as the
receiver takes it; while anything is kept, later exports queue behind it,
so the receiver reads them in the order the CLI sent them. A ``4xx`` the
receiver gives (a malformed export) goes back to the CLI as it is, and one
that a kept export meets is set aside (``rejected/``, counted): keeping it
would not make it better.

The spool is a folder per destination under the hook's spool
(``relay/<hash of the endpoint>/``, mode 0700, its ``destination`` file
naming the endpoint): what is left at the session's end waits there, and
the next launcher aimed at the same endpoint sends it before anything of
its own. A kept export never goes to another endpoint. At most
:data:`MAX_SPOOL_BYTES` wait per destination; past it the CLI gets a
``503`` (its exporter's own retry, then its own drop), counted and said
once at the session's end.

Started before the CLI: the listening socket only (the standard library's
HTTP server is built in the relay's thread, off the CLI's start).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from spanvisor.gate import servetoken

SIGNALS = frozenset({"traces", "logs", "metrics"})
MAX_EXPORT_BYTES = 16 * 1024 * 1024
MAX_SPOOL_BYTES = 64 * 1024 * 1024
REQUEST_TIMEOUT_S = 3.0
RETRY_MIN_S, RETRY_MAX_S = 0.25, 5.0
# Content types as a kept export's file name says them.
_TYPES = {"p": "application/x-protobuf", "j": "application/json"}
_CODES = {v: k for k, v in _TYPES.items()}


def destination_dir(spool: Path, endpoint: str) -> Path:
    return spool / "relay" / hashlib.sha256(endpoint.encode()).hexdigest()[:16]


class Relay:
    """One session's relay: ``url`` and ``headers`` are what the CLI gets."""

    def __init__(self, endpoint: str, token: str | None, spool: Path) -> None:
        self.endpoint, self.token = endpoint.rstrip("/"), token
        self.secret = secrets.token_urlsafe(24)
        self.dir = destination_dir(spool, self.endpoint)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.forwarded = 0
        self.kept = 0  # exports kept because the receiver did not take them
        self.refused_full = 0  # exports answered 503: the spool was full
        self.rejected = 0  # kept exports the receiver refused (4xx), set aside
        self._seq = 0
        self._cond = threading.Condition()
        self._closing = False
        self._server: Any = None
        self._made = threading.Event()  # the HTTP server is built (or will not be)
        self._started = False
        self._thread = threading.Thread(target=self._serve, name="spanvisor-run-relay", daemon=True)
        self._sender = threading.Thread(target=self._send_kept, name="spanvisor-run-relay-send", daemon=True)

    @property
    def headers(self) -> str:
        """``OTEL_EXPORTER_OTLP_HEADERS`` for the CLI."""
        return f"authorization=Bearer%20{self.secret}"

    def start(self) -> Relay:
        """Serve the socket bound at construction. The launcher starts the
        CLI first: the kernel queues its connections meanwhile, and the HTTP
        server's import (about 14 ms) does not compete with the CLI's start."""
        self._started = True
        self._thread.start()
        self._sender.start()
        return self

    # -- the CLI's side ------------------------------------------------------

    def _serve(self) -> None:
        import http.server

        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                status, ctype, body = relay.take(self.path, dict(self.headers.items()), self._body())
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes | None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    return self._chunked()  # Node.js's exporters (Gemini CLI, Qwen Code) send so
                try:
                    n = int(self.headers.get("Content-Length") or "0")
                except ValueError:
                    return None
                if n < 0 or n > MAX_EXPORT_BYTES:
                    return None
                return self.rfile.read(n)

            def _chunked(self) -> bytes | None:
                parts: list[bytes] = []
                total = 0
                while True:
                    line = self.rfile.readline(1024)
                    try:
                        size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                    except ValueError:
                        return None
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    total += size
                    if size < 0 or total > MAX_EXPORT_BYTES:
                        return None
                    parts.append(self.rfile.read(size))
                    self.rfile.readline(8)  # the chunk's CRLF

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = self.sock
        server.daemon_threads = True
        with self._cond:
            if self._closing:  # the CLI was gone before the server was built
                self._made.set()
                return
            self._server = server
        self._made.set()
        server.serve_forever(poll_interval=0.05)  # its shutdown waits for one poll, at every session end

    def take(self, path: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str, bytes]:
        """One export of the CLI: (status, content type, body) to answer."""
        lower = {k.lower(): v for k, v in headers.items()}
        signal = path.split("?", 1)[0].rstrip("/").rpartition("/v1/")[2]
        if signal not in SIGNALS:
            return 404, "text/plain", b"not an OTLP path"
        if not self._authorized(lower.get("authorization", "")):
            return 401, "text/plain", b"not this session's"
        if body is None:
            return 413, "text/plain", b"too large"
        ctype = lower.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
        code = _CODES.get(ctype)
        if code is None:
            return 415, "text/plain", b"OTLP/HTTP is protobuf or JSON"
        gzip = lower.get("content-encoding", "").strip().lower() == "gzip"
        with self._cond:
            behind = self._has_kept()
        if not behind:
            got = self._forward(signal, ctype, gzip, body)
            if got is not None and (got[0] < 500 and got[0] != 429):
                if 200 <= got[0] < 300:
                    self.forwarded += 1
                return got
        if not self._keep(signal, code, gzip, body):
            self.refused_full += 1
            return 503, "text/plain", b"the launcher's spool is full"
        return 200, ctype, b"{}" if code == "j" else b""

    def _authorized(self, header: str) -> bool:
        """``Bearer <the relay's token>``. Claude Code sends the value of
        ``OTEL_EXPORTER_OTLP_HEADERS`` as it is, without percent-decoding
        it (``Bearer%20…``): taken too."""
        scheme, sep, credentials = header.strip().replace("%20", " ", 1).partition(" ")
        same = hmac.compare_digest(credentials.strip().encode(), self.secret.encode())
        return same and bool(sep) and scheme.lower() == "bearer"

    # -- the receiver's side ---------------------------------------------------

    def _forward(self, signal: str, ctype: str, gzip: bool, body: bytes) -> tuple[int, str, bytes] | None:
        """POST to the endpoint: (status, content type, body); None when it
        could not be reached."""
        import http.client

        parts = urllib.parse.urlsplit(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        path = parts.path.rstrip("/") + f"/v1/{signal}"
        headers = {"Content-Type": ctype}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        # The local serve's token (given, or read now: serve may have started
        # after the launcher) only to this user's listener; another user's
        # port is not the receiver, and the export waits in the spool.
        sending = servetoken.bearer(self.endpoint, self.token)
        if sending.refused:
            return None
        if sending.token:
            headers["Authorization"] = f"Bearer {sending.token}"
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or ctype, resp.read(1 << 20)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def _has_kept(self) -> bool:
        try:
            return any(p.suffix == ".otlp" for p in self.dir.iterdir())
        except OSError:
            return False

    def _kept(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.iterdir() if p.suffix == ".otlp")
        except OSError:
            return []

    def _keep(self, signal: str, code: str, gzip: bool, body: bytes) -> bool:
        with self._cond:
            try:
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                (self.dir / "destination").write_text(self.endpoint + "\n")
                used = sum(p.stat().st_size for p in self._kept())
            except OSError:
                return False
            if used + len(body) > MAX_SPOOL_BYTES:
                return False
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{signal}-{code}{'z' if gzip else ''}.otlp"
            tmp = self.dir / f".{name}.tmp"
            try:
                tmp.write_bytes(body)
                tmp.rename(self.dir / name)
            except OSError:
                return False
            self.kept += 1
            self._cond.notify_all()
            return True

    def _send_kept(self) -> None:
        """Send what is kept, oldest first, as the receiver takes it."""
        pause = RETRY_MIN_S
        while True:
            with self._cond:
                while not self._closing and not self._has_kept():
                    self._cond.wait(5.0)
                if self._closing:
                    return
            if self.send_once():
                pause = RETRY_MIN_S
                continue
            with self._cond:
                if self._closing:
                    return
                self._cond.wait(pause)
            pause = min(pause * 2, RETRY_MAX_S)

    def send_once(self) -> bool:
        """Send the oldest kept export; True when it left the spool (sent, or
        set aside as refused), False when the receiver did not take it, or
        another launcher aimed at the same endpoint is sending (one sender a
        destination at a time: ``flock`` on its ``.lock``, so no export
        goes twice)."""
        import fcntl

        try:
            lock = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            return False
        try:
            return self._send_oldest()
        finally:
            os.close(lock)  # and its lock with it

    def _send_oldest(self) -> bool:
        kept = self._kept()
        if not kept:
            return False
        path = kept[0]
        _, _, _, signal, code = path.stem.split("-", 4)
        gzip = code.endswith("z")
        try:
            body = path.read_bytes()
        except OSError:
            return False
        got = self._forward(signal, _TYPES.get(code[:1], _TYPES["p"]), gzip, body)
        if got is None or got[0] >= 500 or got[0] == 429:
            return False
        if got[0] >= 300:  # the receiver refused it: set aside, never retried
            self.rejected += 1
            aside = self.dir / "rejected"
            aside.mkdir(exist_ok=True, mode=0o700)
            path.rename(aside / path.name)
        else:
            self.forwarded += 1
            path.unlink(missing_ok=True)
        return True

    def close(self, within_s: float) -> int:
        """Stop taking exports, send what is kept for at most ``within_s``;
        how many stay kept (for the next launcher aimed at this endpoint)."""
        if self._started:
            self._made.wait(1.0)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            server = self._server
        if server is not None:
            server.shutdown()
        if self._sender.is_alive():
            self._sender.join(REQUEST_TIMEOUT_S + 1)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and self.send_once():
            pass
        left = len(self._kept())
        self.sock.close()
        return left

    def said(self) -> str | None:
        """What the session's end says of the relay, when anything went wrong."""
        parts = []
        if self.refused_full:
            parts.append(f"{self.refused_full} exports were refused (the spool in {self.dir} was full)")
        if self.rejected:
            parts.append(f"{self.rejected} kept exports were refused by {self.endpoint} (in {self.dir / 'rejected'})")
        return "; ".join(parts) or None


def listen(endpoint: str, token: str | None, spool: Path) -> Relay | None:
    """A relay for the session, listening (:meth:`Relay.start` serves it),
    or None when none can listen (the CLI then sends to the endpoint
    itself, as before, said once)."""
    try:
        return Relay(endpoint, token, spool)
    except OSError as exc:
        print(f"spanvisor run: no relay for the CLI's telemetry ({exc.strerror or exc})", file=sys.stderr, flush=True)
        return None


__all__ = ["MAX_SPOOL_BYTES", "Relay", "destination_dir", "listen"]
