"""Servers that accept connections and never answer: a receiver, control
API or launcher that hangs; and a switch that blackholes a receiver, then
lets it through (held requests included)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading


class Blackhole:
    """A TCP server (or a Unix socket, with ``unix=True``) that accepts
    connections and never answers."""

    def __init__(self, unix: bool = False) -> None:
        self.dir: str | None = None
        if unix:
            self.dir = tempfile.mkdtemp(prefix="blackhole-")
            self.path = os.path.join(self.dir, "gate.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(self.path)
            self.url = self.path
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)
        for c in self.held:
            c.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


class Switch:
    """A TCP front for ``target`` (host, port): while ``hole`` it accepts
    and holds every connection, reading what the client sends and answering
    nothing; once :meth:`through` is called it forwards every held
    connection's bytes (a request the client gave up on arrives late) and
    every new connection to the target."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.hole = True
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self._held: list[tuple[socket.socket, bytearray]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, fn: object, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.set()
            with self._lock:
                if self.hole:
                    buf = bytearray()
                    self._held.append((conn, buf))
                    self._spawn(self._hold, conn, buf)
                    continue
            self._spawn(self._forward, conn, b"")

    def _hold(self, conn: socket.socket, buf: bytearray) -> None:
        conn.settimeout(0.2)
        while self.hole:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf.extend(chunk)

    def through(self) -> None:
        """Let everything through from now on, the held requests first."""
        with self._lock:
            self.hole = False
            held, self._held = self._held, []
        for conn, buf in held:
            self._spawn(self._forward, conn, bytes(buf))

    def _forward(self, conn: socket.socket, first: bytes) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:
            conn.close()
            return
        if first:
            upstream.sendall(first)
        self._spawn(_pipe, upstream, conn)
        _pipe(conn, upstream)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            for conn, _ in self._held:
                conn.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    src.settimeout(60)
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
