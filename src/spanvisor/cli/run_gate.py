"""``spanvisor run``'s local gate: the session's hooks decided in the
launcher's warm process (:mod:`spanvisor.gate.local`).

The socket lives in a fresh directory of mode 0700 (the socket itself
0600) under ``$XDG_RUNTIME_DIR`` or the temporary directory, and on Linux a
connection from another user id is refused (``SO_PEERCRED``) even where
the file modes would let it in. Each connection is one hook call, decided
on a thread of its own by the same code as the command hook
(:func:`spanvisor.cli.hook.main`), with the same policy file, deadline and
answers; the hook process writes the answer out.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

from spanvisor.cli import hook
from spanvisor.gate import local


class LocalGate:
    """The listening socket and its threads, for one session."""

    def __init__(self) -> None:
        base = os.environ.get("XDG_RUNTIME_DIR")
        self.dir = tempfile.mkdtemp(prefix="spanvisor-gate-", dir=base if base and os.path.isdir(base) else None)
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, "gate.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(64)
        self.answered = 0
        self._thread = threading.Thread(target=self._accept, name="spanvisor-run-gate", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="spanvisor-run-gate-call", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn:
            if not _same_user(conn):
                return
            doc = local.read_frame(conn, started + 10.0)
            argv, raw = (doc or {}).get("argv"), (doc or {}).get("stdin")
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not isinstance(raw, str):
                return  # the hook decides by itself
            cwd, env = (doc or {}).get("cwd"), (doc or {}).get("env")
            if (
                not isinstance(cwd, str)
                or not isinstance(env, dict)
                or not all(isinstance(v, str) for v in env.values())
            ):
                return
            out, err = io.StringIO(), io.StringIO()
            # Decided as the hook process would: its variables, its directory.
            code = hook.main(
                argv, stdin=raw.encode("latin-1"), stdout=out, stderr=err, started=started, env=env, cwd=cwd
            )
            self.answered += 1
            try:
                conn.settimeout(5.0)
                conn.sendall(local.frame({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}))
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def _same_user(conn: socket.socket) -> bool:
    """Whether the peer runs as this user (Linux's SO_PEERCRED; elsewhere
    the directory's mode is the guard)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None or not sys.platform.startswith("linux"):
        return True
    try:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return False
    return bool(uid == os.getuid())


__all__ = ["LocalGate"]
